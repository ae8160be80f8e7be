"""Measure how cache chunk layouts serve the three read patterns (z-plane, xz-plane, whole level).

Run: ``python benchmarks/bench_cache_chunks.py [--quick] [--all]``. Writes a level-1-sized array
(250 x 1024 x 1024 uint16, like the 500 x 2048 x 2048 benchmark stack) and the smaller levels in
each candidate layout, then times, side by side in alternating rounds: the build write, one z-plane
and one xz-plane (warm page cache and cold, dropped with posix_fadvise), and the whole last level.

By default it compares the cache's layout before issue 17 (plain (16,64,X) chunk files) with the
current one (``ctstack.cache.layout``: shards of whole planes holding the same read chunks,
written by the cache's own ``write_block`` and read through its ``EntryStore``), with the ratio
new / old per column. ``--all`` measures every candidate layout of the original study as well.
``run(quick)`` returns a markdown section for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCodec


@dataclass(frozen=True)
class Layout:
    """One candidate: on-disk format, codec and chunk rule (depth, rows; x always whole)."""

    label: str
    zarr_format: int
    cz: int
    cy: int
    codec: str = "none"  # "none" or "lz4"
    shard_depth: int = 0  # >0: zarr v3 sharding, shards of this many whole planes
    cache: bool = False  # the cache's own layout, writer and reader (cz, cy unused)

    def chunks(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        if not self.cz:  # the cache's chunk rule (keys.chunk_shape)
            from ctstack.cache.keys import chunk_shape

            return chunk_shape(shape, 2)
        z, y, x = shape
        return (min(self.cz, z), min(self.cy, y), x)

    def create(self, path: Path, shape: tuple[int, int, int]) -> zarr.Array:
        kwargs: dict = {"compressors": None}
        if self.codec == "lz4" and self.zarr_format == 3:
            kwargs["compressors"] = BloscCodec(cname="lz4", clevel=1, shuffle="shuffle", typesize=2)
        elif self.codec == "lz4":
            kwargs["compressors"] = Blosc(cname="lz4", clevel=1, shuffle=Blosc.SHUFFLE)
        if self.zarr_format == 3:
            kwargs["filters"] = None
        shards = None
        if self.shard_depth:
            z, y, x = shape
            shards = (min(self.shard_depth, z), y, x)
        return zarr.create_array(
            store=str(path),
            shape=shape,
            chunks=self.chunks(shape),
            shards=shards,
            dtype="uint16",
            fill_value=0,
            zarr_format=self.zarr_format,
            overwrite=True,
            **kwargs,
        )


OLD = Layout("before: chunk_shape() chunk files", 3, 0, 0)
NEW = Layout("now: cache.layout (write_block, EntryStore)", 3, 0, 0, cache=True)

LAYOUTS = (
    Layout("v3 plane (1,Y,X) none", 3, 1, 1 << 30),
    Layout("v3 (1,64,X) none", 3, 1, 64),
    Layout("v3 (2,64,X) none", 3, 2, 64),
    Layout("v3 (4,64,X) none", 3, 4, 64),
    Layout("v3 (8,32,X) none", 3, 8, 32),
    Layout("v3 (8,64,X) none", 3, 8, 64),
    Layout("v3 (16,32,X) none", 3, 16, 32),
    Layout("v3 (16,64,X) none", 3, 16, 64),
    Layout("v3 (32,32,X) none", 3, 32, 32),
    Layout("v2 (16,64,X) none", 2, 16, 64),
    Layout("v3 (16,64,X) blosc-lz4", 3, 16, 64, codec="lz4"),
    Layout("v3 shard (16,Y,X) of (1,64,X) none", 3, 1, 64, shard_depth=16),
)


def synthetic_ct(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A CT-like uint16 volume: a smooth body plus noise, so a codec sees realistic entropy."""
    z, y, x = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[-1 : 1 : y * 1j, -1 : 1 : x * 1j]
    body = np.where(xx**2 + yy**2 < 0.8, 12000.0, 1000.0) + 3000.0 * np.cos(6 * xx) * yy
    out = np.empty(shape, np.uint16)
    for k in range(z):
        plane = body + rng.normal(0.0, 300.0, size=(y, x))
        out[k] = np.clip(plane, 0, 65535).astype(np.uint16)
    return out


def _files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def drop_cache(path: Path) -> None:
    """Evict every file of an array from the page cache (the cold-read case)."""
    for f in _files(path):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _time(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def write_level(layout: Layout, path: Path, data: np.ndarray) -> float:
    """Write like the cache writer does: slabs one chunk (or shard) deep, in increasing z."""
    if layout.cache:
        return _write_cache_level(path, data)
    depth = layout.shard_depth or layout.chunks(data.shape)[0]

    def go() -> None:
        arr = layout.create(path, data.shape)
        for z0 in range(0, data.shape[0], depth):
            arr[z0 : z0 + depth] = data[z0 : z0 + depth]

    return _time(go)


def _write_cache_level(path: Path, data: np.ndarray) -> float:
    """The cache's own path: level metadata once, then ``write_block`` per file-deep slab."""
    from ctstack.cache.layout import create_levels, level_layout, write_block

    def go() -> None:
        path.mkdir()
        create_levels(path, [data.shape], data.dtype, "bench")
        depth = level_layout(data.shape, data.dtype.itemsize).z_depth
        for z0 in range(0, data.shape[0], depth):
            write_block(path, 1, data.shape, data.dtype, z0, data[z0 : z0 + depth])

    return _time(go)


def _open(layout: Layout, path: Path) -> zarr.Array:
    if layout.cache:
        from ctstack.cache.store import open_level

        return open_level(path, 1)
    return zarr.open_array(str(path), mode="r")


def measure(layout: Layout, base: Path, levels: list[np.ndarray], rng) -> dict[str, float]:
    """One round for one layout: write all levels, then the reads."""
    out: dict[str, float] = {}
    paths = [base / f"{layout.label.replace(' ', '_')}_{i + 1}" for i in range(len(levels))]
    out["write"] = sum(write_level(layout, p, d) for p, d in zip(paths, levels, strict=True))
    size = sum(f.stat().st_size for p in paths for f in _files(p))
    out["MB"] = size / 1e6
    out["files"] = sum(1 for p in paths for f in _files(p) if f.name != "zarr.json")
    a1 = _open(layout, paths[0])
    z1, y1, _ = a1.shape
    zs = rng.integers(0, z1, 5)
    ys = rng.integers(0, y1, 5)
    out["z warm"] = statistics.median(_time(lambda z=z: a1[int(z)]) for z in zs)
    out["xz warm"] = statistics.median(_time(lambda y=y: a1[:, int(y), :]) for y in ys)
    cold_z, cold_xz = [], []
    for z, y in zip(zs[:3], ys[:3], strict=True):
        drop_cache(paths[0])
        cold_z.append(_time(lambda z=z: a1[int(z)]))
        drop_cache(paths[0])
        cold_xz.append(_time(lambda y=y: a1[:, int(y), :]))
    out["z cold"] = statistics.median(cold_z)
    out["xz cold"] = statistics.median(cold_xz)
    out["first warm"] = statistics.median(_time(lambda: a1[:]) for _ in range(2))
    drop_cache(paths[0])
    out["first cold"] = _time(lambda: a1[:])
    if not np.array_equal(a1[:, int(ys[0]), :], levels[0][:, int(ys[0]), :]):
        raise AssertionError(f"{layout.label}: first level reads back different values")
    last = _open(layout, paths[-1])
    out["last warm"] = statistics.median(_time(lambda: last[:]) for _ in range(3))
    drop_cache(paths[-1])
    out["last cold"] = _time(lambda: last[:])
    got = last[:]
    if not np.array_equal(got, levels[-1]):  # a layout that reads back wrong is worthless
        raise AssertionError(f"{layout.label}: last level reads back different values")
    for p in paths:
        shutil.rmtree(p)
    return out


def _pyramid(shape1: tuple[int, int, int], last: int) -> list[np.ndarray]:
    levels = [synthetic_ct(shape1)]
    while max(levels[-1].shape) > last:
        levels.append(np.ascontiguousarray(levels[-1][::2, ::2, ::2]))
    return levels


KEYS = [
    "write",
    "MB",
    "files",
    "z warm",
    "z cold",
    "xz warm",
    "xz cold",
    "first warm",
    "first cold",
    "last warm",
    "last cold",
]


def _table(layouts, results, ratio: bool) -> list[str]:
    med = {
        lay.label: {k: statistics.median(r[k] for r in results[lay.label]) for k in KEYS}
        for lay in layouts
    }
    lines = ["| layout | " + " | ".join(KEYS) + " |", "|---|" + "---:|" * len(KEYS)]
    for lay in layouts:
        cells = [
            f"{v:.0f}" if k in ("MB", "files") else f"{v * 1000:.1f}"
            for k, v in med[lay.label].items()
        ]
        lines.append(f"| {lay.label} | " + " | ".join(cells) + " |")
    if ratio:
        cells = [f"{med[NEW.label][k] / med[OLD.label][k]:.2f}" for k in KEYS]
        lines.append("| **ratio now / before** | " + " | ".join(cells) + " |")
    return lines


def run(quick: bool = False, everything: bool = False) -> str:
    """Measure the layouts in alternating rounds; return a markdown section with medians.

    Two cases: the benchmark stack's level 1 (chunk files of >= 1 MiB: the layout keeps them)
    and a deep level whose chunks are small (the layout shards them), old and new side by side.
    """
    rounds = 1 if quick else 3
    cases = [
        ("benchmark stack level 1", (64, 512, 512) if quick else (250, 1024, 1024)),
        ("deep level, small chunks", (256, 64, 512) if quick else (1000, 256, 1024)),
    ]
    rng = np.random.default_rng(1)
    lines = [
        "## Cache chunk layouts (bench_cache_chunks.py)",
        "",
        f"Synthetic CT-like uint16 data; {rounds} alternating round(s), medians. "
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}, "
        f"zarr {zarr.__version__}. Times in ms; z/xz = one plane of the first level; first/last "
        "= the whole first/last level; cold = after posix_fadvise(DONTNEED). `before` = the "
        "chunk files "
        "of cache version 3, written by zarr; `now` = cache version 4 (`cache.layout`), written "
        "by `write_block` and read through the cache's `EntryStore` (`open_level`: a sharded "
        "level is a `ShardedLevel`, whose plane/block reads pread the inner chunks; "
        "zarr reads each shard's index, then each chunk, one after another).",
    ]
    for n, (title, shape1) in enumerate(cases):
        layouts = (OLD, NEW, *LAYOUTS) if everything and n == 0 else (OLD, NEW)
        levels = _pyramid(shape1, 128 if quick else 512)
        results: dict[str, list[dict[str, float]]] = {lay.label: [] for lay in layouts}
        tmp = os.environ.get("BENCH_TMP")
        with tempfile.TemporaryDirectory(prefix="bench-cache-", dir=tmp) as t:
            for _ in range(rounds):
                for lay in layouts:
                    results[lay.label].append(measure(lay, Path(t), levels, rng))
        shapes = " + ".join("x".join(map(str, lv.shape)) for lv in levels)
        from ctstack.cache.layout import level_layout

        lay0 = level_layout(levels[0].shape, 2)
        kind = f"shards {lay0.shard} of {lay0.chunks}" if lay0.sharded else f"chunks {lay0.chunks}"
        lines += ["", f"### {title}: levels {shapes}; now: {kind}", ""]
        lines += _table(layouts, results, ratio=True)
        del levels
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small arrays, one round")
    parser.add_argument("--all", action="store_true", help="every candidate layout too")
    args = parser.parse_args()
    print(run(quick=args.quick, everything=args.all))


if __name__ == "__main__":
    main()
