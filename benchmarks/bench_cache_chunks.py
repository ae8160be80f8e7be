"""Measure how cache chunk layouts serve the three read patterns (z-plane, xz-plane, whole level).

Run: ``python benchmarks/bench_cache_chunks.py [--quick]``. Writes a level-1-sized array
(250 x 1024 x 1024 uint16, like the 500 x 2048 x 2048 benchmark stack) and the smaller levels in
each candidate layout, then times, side by side in alternating rounds: the build write, one z-plane
and one xz-plane (warm page cache and cold, dropped with posix_fadvise), and the whole last level.
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

    def chunks(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
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
    depth = layout.shard_depth or layout.chunks(data.shape)[0]

    def go() -> None:
        arr = layout.create(path, data.shape)
        for z0 in range(0, data.shape[0], depth):
            arr[z0 : z0 + depth] = data[z0 : z0 + depth]

    return _time(go)


def measure(layout: Layout, base: Path, levels: list[np.ndarray], rng) -> dict[str, float]:
    """One round for one layout: write all levels, then the reads."""
    out: dict[str, float] = {}
    paths = [base / f"{layout.label.replace(' ', '_')}_{i + 1}" for i in range(len(levels))]
    out["write"] = sum(write_level(layout, p, d) for p, d in zip(paths, levels, strict=True))
    size = sum(f.stat().st_size for p in paths for f in _files(p))
    out["MB"] = size / 1e6
    a1 = zarr.open_array(str(paths[0]), mode="r")
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
    last = zarr.open_array(str(paths[-1]), mode="r")
    out["last warm"] = statistics.median(_time(lambda: last[:]) for _ in range(3))
    drop_cache(paths[-1])
    out["last cold"] = _time(lambda: last[:])
    got = last[:]
    if not np.array_equal(got, levels[-1]):  # a layout that reads back wrong is worthless
        raise AssertionError(f"{layout.label}: last level reads back different values")
    for p in paths:
        shutil.rmtree(p)
    return out


def run(quick: bool = False) -> str:
    """Measure every layout in alternating rounds; return a markdown section with medians."""
    shape1 = (64, 512, 512) if quick else (250, 1024, 1024)
    rounds = 1 if quick else 3
    levels = [synthetic_ct(shape1)]
    while max(levels[-1].shape) > (128 if quick else 512):
        prev = levels[-1]
        levels.append(np.ascontiguousarray(prev[::2, ::2, ::2]))
    rng = np.random.default_rng(1)
    results: dict[str, list[dict[str, float]]] = {lay.label: [] for lay in LAYOUTS}
    with tempfile.TemporaryDirectory(prefix="bench-cache-", dir=os.environ.get("BENCH_TMP")) as t:
        for _ in range(rounds):
            for lay in LAYOUTS:
                results[lay.label].append(measure(lay, Path(t), levels, rng))
    keys = ["write", "MB", "z warm", "z cold", "xz warm", "xz cold", "last warm", "last cold"]
    shapes = " + ".join("x".join(map(str, lv.shape)) for lv in levels)
    lines = [
        "## Cache chunk layouts (bench_cache_chunks.py)",
        "",
        f"Levels {shapes} uint16, synthetic CT-like data; {rounds} alternating round(s), medians.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}, "
        f"zarr {zarr.__version__}. Times in ms; z/xz = one plane of level 1; last = whole "
        "last level; cold = after posix_fadvise(DONTNEED).",
        "",
        "| layout | " + " | ".join(keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for lay in LAYOUTS:
        rs = results[lay.label]
        cells = []
        for k in keys:
            v = statistics.median(r[k] for r in rs)
            cells.append(f"{v:.0f}" if k == "MB" else f"{v * 1000:.1f}")
        lines.append(f"| {lay.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small arrays, one round")
    print(run(quick=parser.parse_args().quick))


if __name__ == "__main__":
    main()
