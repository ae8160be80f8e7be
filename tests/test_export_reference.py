"""Plain-numpy references and small stack writers shared by the export/mesh/ROI/batch tests.

Independent of the engine on purpose: the pyramid rule is re-implemented from its definition in
docs/architecture.md ("The pyramid, exactly").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import tifffile

VOXEL = (5.0, 2.5, 2.5)  # micrometres, anisotropic so axis mix-ups show


def downsample_ref(vol: np.ndarray) -> np.ndarray:
    """One 2x2x2 mean step (partial blocks at odd edges), rounding half up for integers."""
    nz, ny, nx = vol.shape
    out_shape = ((nz + 1) // 2, (ny + 1) // 2, (nx + 1) // 2)
    total = np.zeros(out_shape, np.float64 if vol.dtype.kind == "f" else np.int64)
    count = np.zeros(out_shape, np.int64)
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                part = vol[dz::2, dy::2, dx::2]
                sz, sy, sx = part.shape
                total[:sz, :sy, :sx] += part
                count[:sz, :sy, :sx] += 1
    if vol.dtype.kind == "f":
        return (total / count).astype(vol.dtype)
    return ((total + count // 2) // count).astype(vol.dtype)


def reference_levels(vol: np.ndarray, n: int) -> list[np.ndarray]:
    levels = [vol]
    for _ in range(n):
        levels.append(downsample_ref(levels[-1]))
    return levels


def level_slices(region: tuple, k: int) -> tuple:
    """Level-k footprint of a level-0 (start, stop) region: [floor(a/2^k), ceil(b/2^k))."""
    f = 1 << k
    return tuple(slice(a // f, -(-b // f)) for a, b in region)


def make_volume(shape: tuple, dtype: str, seed: int = 0) -> np.ndarray:
    """Random data spanning a good part of the dtype's range (NaN-free)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dt)
    info = np.iinfo(dt)
    lo, hi = max(info.min, -30000), min(info.max, 60000)
    return rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)


def write_slices(
    folder: Path,
    vol: np.ndarray,
    prefix: str = "scan_",
    first: int = 0,
    step: int = 1,
    digits: int = 5,
) -> list[Path]:
    """Numbered TIFF slices with ImageJ voxel size (VOXEL) where ImageJ allows the dtype."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, plane in enumerate(vol):
        p = folder / f"{prefix}{first + i * step:0{digits}d}.tif"
        if plane.dtype.name in ("uint8", "uint16", "float32"):
            tifffile.imwrite(
                p,
                plane,
                imagej=True,
                resolution=(1 / VOXEL[2], 1 / VOXEL[1]),
                metadata={"spacing": VOXEL[0], "unit": "um"},
            )
        else:
            tifffile.imwrite(p, plane)
        paths.append(p)
    return paths


def snapshot(folder: Path) -> dict:
    """Names, sizes, mtimes and hashes of every file below folder (to prove it is untouched)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and ".ctstack" not in p.parts:
            st = p.stat()
            out[str(p.relative_to(folder))] = (
                st.st_size,
                st.st_mtime_ns,
                hashlib.sha1(p.read_bytes()).hexdigest(),
            )
    return out


def leftovers(folder: Path) -> list[str]:
    """Names of temporary export files/folders left in folder."""
    return [p.name for p in folder.iterdir() if "ctstack-tmp" in p.name or "ctstack-old" in p.name]


def test_reference_downsample_odd_edges():
    vol = np.arange(3 * 3 * 3, dtype=np.uint16).reshape(3, 3, 3)
    out = downsample_ref(vol)
    assert out.shape == (2, 2, 2)
    assert out[1, 1, 1] == 26  # a corner block of one voxel keeps its value
    assert out[0, 0, 0] == (0 + 1 + 3 + 4 + 9 + 10 + 12 + 13 + 4) // 8  # mean 6.5 rounds up


def test_reference_matches_engine_kernel():
    import ctstack

    vol = make_volume((5, 7, 9), "uint16", 3)
    assert np.array_equal(np.asarray(ctstack.downsample(vol)), downsample_ref(vol))
