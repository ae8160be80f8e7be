"""The slab plan of a cluster build: which task writes which z-blocks of which level.

A slab is a run of ``S = 2**k * c`` base planes (level-0 slices of the stack, or planes of an
export region) starting at a multiple of ``S``. Its task runs the cascade for ``k`` levels and
writes every file block it produces. A level's files are grouped in z-blocks of ``z_depth``
planes (the chunk or shard depth); ``S`` is a multiple of ``2**j * z_depth_j`` for every level
``j`` the slabs write, so the planes a slab makes at level ``j`` are whole z-blocks and no two
slabs touch one file. Levels above ``k`` have too few planes to split: one final *top* task
builds them from level ``k``. :meth:`SlabPlan.prove` checks the ownership on the plan itself:
every z-block of every level has exactly one writer.

The task count is ``ceil(Z / S)`` (+1 for the top), so it grows with slices / slab size, not
with chunks x levels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SLAB_SLICES = 128
"""The slab size aimed at (base planes per task), unless the file layout needs more."""


class PlanError(ValueError):
    """The plan breaks its own rule: a z-block with no writer or with two."""


@dataclass(frozen=True)
class LevelSpec:
    """One written level: its index (0 = the base planes), its z size and its file z-depth."""

    level: int
    depth: int
    z_depth: int


@dataclass(frozen=True)
class Slab:
    """Base planes ``start..stop`` (half-open), built by task ``index``."""

    index: int
    start: int
    stop: int

    @property
    def planes(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class SlabPlan:
    """Slab tasks for levels ``<= slab_levels``, then one top task for the rest (if any)."""

    nz: int
    levels: tuple[LevelSpec, ...]
    slab_levels: int
    slab_size: int
    slabs: tuple[Slab, ...]

    @property
    def slab_written(self) -> tuple[LevelSpec, ...]:
        """The levels the slab tasks write."""
        return tuple(s for s in self.levels if s.level <= self.slab_levels)

    @property
    def top_written(self) -> tuple[LevelSpec, ...]:
        """The levels the top task writes (built from level ``slab_levels``); may be empty."""
        return tuple(s for s in self.levels if s.level > self.slab_levels)

    @property
    def tasks(self) -> int:
        return len(self.slabs) + (1 if self.top_written else 0)

    def signature(self) -> dict[str, object]:
        """What identifies the plan in a ledger: a ledger of another plan is discarded."""
        return {
            "nz": self.nz,
            "levels": [[s.level, s.depth, s.z_depth] for s in self.levels],
            "slab_levels": self.slab_levels,
            "slab_size": self.slab_size,
        }

    def level_planes(self, slab: Slab, level: int) -> range:
        """The planes of ``level`` that ``slab`` produces (its share of the cascade)."""
        spec = self._spec(level)
        first = slab.start >> level
        last = spec.depth if slab.stop >= self.nz else slab.stop >> level
        return range(first, last)

    def blocks(self, slab: Slab) -> dict[int, range]:
        """The z-block indices ``slab`` writes, per level."""
        out = {}
        for spec in self.slab_written:
            planes = self.level_planes(slab, spec.level)
            if len(planes):
                out[spec.level] = range(
                    planes.start // spec.z_depth, (planes.stop - 1) // spec.z_depth + 1
                )
        return out

    def top_blocks(self) -> dict[int, range]:
        """The z-block indices the top task writes, per level (all blocks of its levels)."""
        return {s.level: range(-(-s.depth // s.z_depth)) for s in self.top_written}

    def prove(self) -> int:
        """Check that every z-block of every level has exactly one writer, and that slab
        planes are whole blocks; returns the number of z-blocks. Raises ``PlanError``."""
        owner: dict[tuple[int, int], str] = {}

        def claim(level: int, block: int, who: str) -> None:
            taken = owner.get((level, block))
            if taken is not None:
                raise PlanError(f"level {level} z-block {block} is written by {taken} and {who}")
            owner[(level, block)] = who

        for slab in self.slabs:
            for level, blocks in self.blocks(slab).items():
                spec = self._spec(level)
                planes = self.level_planes(slab, level)
                if planes.start % spec.z_depth or (
                    planes.stop % spec.z_depth and planes.stop != spec.depth
                ):
                    raise PlanError(
                        f"slab {slab.index} makes planes {planes.start}..{planes.stop} of level "
                        f"{level}, not whole z-blocks of {spec.z_depth}"
                    )
                for b in blocks:
                    claim(level, b, f"slab {slab.index}")
        for level, blocks in self.top_blocks().items():
            for b in blocks:
                claim(level, b, "the top task")
        for spec in self.levels:
            for b in range(-(-spec.depth // spec.z_depth)):
                if (spec.level, b) not in owner:
                    raise PlanError(f"level {spec.level} z-block {b} has no writer")
        return len(owner)

    def _spec(self, level: int) -> LevelSpec:
        for s in self.levels:
            if s.level == level:
                return s
        raise PlanError(f"level {level} is not written by this plan")


def _slab_multiple(levels: Sequence[LevelSpec], k: int) -> int:
    """The smallest slab size whose planes are whole z-blocks at every written level <= k."""
    return math.lcm(1 << k, *((1 << s.level) * s.z_depth for s in levels if s.level <= k))


def plan_slabs(
    nz: int,
    levels: Sequence[LevelSpec],
    target: int = DEFAULT_SLAB_SLICES,
    min_slab_levels: int = 1,
) -> SlabPlan:
    """Split ``nz`` base planes into slabs for the written ``levels`` (ascending).

    The slab level ``k`` is the deepest one whose smallest slab size still gives two slabs or
    more and stays within ``target`` (else the shallowest that gives two slabs; else one slab
    does everything). The slab size is that multiple times ``target // multiple``.
    """
    specs = tuple(sorted(levels, key=lambda s: s.level))
    if not specs:
        raise PlanError("nothing to write")
    top = specs[-1].level
    candidates = [
        (k, _slab_multiple(specs, k))
        for k in range(min_slab_levels, top + 1)
        if -(-nz // _slab_multiple(specs, k)) >= 2
    ]
    if not candidates:
        k, size = top, max(nz, 1)
    else:
        within = [c for c in candidates if c[1] <= target]
        k, multiple = within[-1] if within else candidates[0]
        size = multiple * max(1, target // multiple)
    slabs = tuple(
        Slab(i, start, min(start + size, nz)) for i, start in enumerate(range(0, nz, size))
    )
    plan = SlabPlan(nz, specs, k, size, slabs)
    plan.prove()
    return plan
