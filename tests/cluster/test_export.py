"""A cluster export writes the same bytes as a local export: slice folders and OME-Zarr
(NGFF 0.4 and 0.5), every file and the metadata JSON compared."""

from __future__ import annotations

import json

import pytest

import ctstack
from ctstack._cluster.export import ome_zarr_plan
from ctstack.errors import Cancelled
from ctstack.sample import write_phantom_stack

from .conftest import tree_files


@pytest.fixture(scope="module")
def stack_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "stack"
    write_phantom_stack(folder, (150, 45, 37), "uint16", voxel_size_um=7.5)
    return folder


def assert_same_tree(a, b):
    fa, fb = tree_files(a), tree_files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        assert fa[name] == fb[name], name
        if name.endswith((".json", ".zattrs", ".zgroup", ".zarray")):
            assert json.loads(fa[name]) == json.loads(fb[name])


@pytest.mark.parametrize(
    ("fmt", "kwargs"),
    [
        ("tiff", {"z": (3, 141), "y": (2, 40)}),
        ("png", {"window": (0, 30000)}),
        ("ome-zarr", {"ngff_version": "0.4", "max_size": 4}),
        ("ome-zarr", {"ngff_version": "0.5", "max_size": 8, "z": (5, 150), "x": (1, 36)}),
        ("ome-zarr", {"ngff_version": "0.5", "compression": "zstd", "shard": True}),
        ("ome-zarr", {"ngff_version": "0.4", "compression": "none", "window": (0, 40000)}),
    ],
)
def test_cluster_export_equals_local(client, tmp_path, stack_folder, fmt, kwargs):
    stack = ctstack.open_stack(stack_folder)
    here = ctstack.export(stack, tmp_path / "local", format=fmt, **kwargs)
    there = ctstack.export(stack, tmp_path / "cluster", format=fmt, client=client, **kwargs)
    assert there.extra.pop("tasks") >= 2
    assert there.extra == here.extra and there.shape == here.shape and there.level == here.level
    if fmt != "ome-zarr":
        assert [p.name for p in there.files] == [p.name for p in here.files]
    assert_same_tree(tmp_path / "local", tmp_path / "cluster")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster", "local"]  # nothing staged


def test_ome_zarr_plan_has_slabs_and_a_top(stack_folder, tmp_path):
    from ctstack._export.ome_zarr import create_image, shapes
    from ctstack._export.regions import make_region

    stack = ctstack.open_stack(stack_folder)
    arrays = create_image(tmp_path, shapes(make_region(stack), 4), stack.dtype, "0.4")
    plan = ome_zarr_plan(arrays)
    assert len(plan.slabs) >= 2 and plan.top_written
    assert plan.prove() == sum(-(-s.depth // s.z_depth) for s in plan.levels)


def test_cluster_export_of_a_level_builds_the_pyramid_on_the_cluster(client, tmp_path):
    folder = tmp_path / "big"
    write_phantom_stack(folder, (40, 600, 40), "uint16")
    here = ctstack.export(ctstack.open_stack(folder), tmp_path / "local", level=1)
    stack = ctstack.open_stack(folder)
    there = ctstack.export(stack, tmp_path / "cluster", level=1, client=client)
    assert stack.pyramid is not None and there.level == 1
    assert_same_tree(here.path, there.path)


def test_cancelled_cluster_export_leaves_nothing(client, tmp_path, stack_folder):
    import threading

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        ctstack.export(
            ctstack.open_stack(stack_folder), tmp_path / "out", client=client, cancel=cancel
        )
    assert not list(tmp_path.iterdir())


def test_cli_export_with_workers(tmp_path, stack_folder):
    import subprocess
    import sys

    run = subprocess.run(
        [
            sys.executable, "-m", "ctstack.cli", "export", str(stack_folder),
            str(tmp_path / "cluster.ome.zarr"), "--format", "ome-zarr", "--ngff", "0.5",
            "--z", "10:130", "--workers", "1",
        ],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "120/120" in run.stderr  # the progress bar counted the cluster's planes
    ctstack.export(
        ctstack.open_stack(stack_folder),
        tmp_path / "local.ome.zarr",
        format="ome-zarr",
        ngff_version="0.5",
        z=(10, 130),
    )
    assert_same_tree(tmp_path / "local.ome.zarr", tmp_path / "cluster.ome.zarr")
