"""The slab plan: every z-block of every level has exactly one writer (tasks own their files),
slabs are aligned to the file layout, and the task count grows with slices / slab size."""

from __future__ import annotations

import dataclasses

import pytest

from ctstack._cluster.build import pyramid_plan
from ctstack._cluster.plan import LevelSpec, PlanError, Slab, plan_slabs
from ctstack.cache.layout import level_layout
from ctstack.pyramid import level_shapes


@pytest.mark.parametrize(
    ("shape", "max_size", "target"),
    [
        ((69, 37, 29), 4, 16),
        ((1, 40, 40), 8, 16),
        ((2, 3000, 20), 64, 16),
        ((129, 20, 20), 2, 8),
        ((500, 2048, 2048), 512, 128),
        ((8000, 4096, 4096), 512, 128),
        ((10_000, 8192, 8192), 512, 128),
    ],
)
def test_every_file_has_exactly_one_writer(shape, max_size, target):
    plan = pyramid_plan(shape, "uint16", max_size, target)
    files = z_blocks = 0
    owners: dict[tuple[int, str], int] = {}
    shapes = level_shapes(shape, max_size)
    for spec in plan.levels:
        layout = level_layout(shapes[spec.level - 1], 2)
        assert spec.z_depth == layout.z_depth
        files += layout.files()
        z_blocks += layout.z_files
    assert plan.prove() == z_blocks
    # the same claim, made from the names of the files each task writes (a z-block's files
    # are every chunk row of its planes)
    writers = [(s.index, plan.blocks(s)) for s in plan.slabs] + [(-1, plan.top_blocks())]
    for who, per_level in writers:
        for level, blocks in per_level.items():
            layout = level_layout(shapes[level - 1], 2)
            for iz in blocks:
                for iy in range(layout.y_files):
                    key = (level, layout.file_key(iz, iy))
                    assert key not in owners, (key, owners.get(key), who)
                    owners[key] = who
    assert len(owners) == files
    assert {k for lv in range(1, len(shapes) + 1) for k in _keys(lv, shapes)} == set(owners)
    for slab in plan.slabs:  # each slab starts where the cascade joins exactly
        assert slab.start % (1 << plan.slab_levels) == 0
        assert slab.start % plan.slab_size == 0


def _keys(level: int, shapes: list) -> list[tuple[int, str]]:
    return [(level, k) for k in level_layout(shapes[level - 1], 2).file_keys()]


def test_task_count_grows_with_slices_not_files():
    big = pyramid_plan((10_000, 8192, 8192), "uint16", 512, 128)
    assert 50 <= big.tasks <= 1000  # hundreds, not the millions of an array graph
    files = sum(level_layout(s, 2).files() for s in level_shapes((10_000, 8192, 8192)))
    assert files > 5 * big.tasks
    half = pyramid_plan((5_000, 8192, 8192), "uint16", 512, 128)
    assert half.tasks < big.tasks


def test_a_broken_plan_is_caught():
    specs = (LevelSpec(1, 50, 16), LevelSpec(2, 25, 16))
    plan = plan_slabs(100, specs, 32)
    plan.prove()
    overlapping = dataclasses.replace(plan, slabs=(Slab(0, 0, 64), Slab(1, 32, 100)))
    with pytest.raises(PlanError, match="written by slab 0 and slab 1"):
        overlapping.prove()
    misaligned = dataclasses.replace(plan, slabs=(Slab(0, 0, 40), Slab(1, 40, 100)))
    with pytest.raises(PlanError):
        misaligned.prove()
    gap = dataclasses.replace(plan, slabs=(Slab(0, 0, 64),))
    with pytest.raises(PlanError, match="no writer"):
        gap.prove()
