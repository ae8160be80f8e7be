"""A deterministic synthetic CT phantom, computable one slice at a time.

Tests, benchmarks, the demo and napari sample data use it. The scene: air around a cylindrical
sample holder (a tube with a floor), a specimen of nested ellipsoids of different densities with
a pore, a few small dense inclusions, mild noise and beam-hardening-like cupping. Slices at the
top and bottom ends hold only air, so auto-cropping and thresholding have something to find.
Every slice is rendered on its own (analytic cross-sections inside each shape's bounding box and
a shifted, precomputed noise field), so a writer works slice by slice in constant memory.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ._readahead import ReadAhead

__all__ = ["PhantomLayout", "phantom", "phantom_layout", "phantom_slice", "write_phantom_stack"]

Shape3 = tuple[int, int, int]
Shape3F = tuple[float, float, float]

# Attenuation-like material values (float32 output); the other dtypes are linear maps of these.
AIR, HOLDER, SPECIMEN, DENSE, CORE, INCLUSION = 0.0, 0.55, 0.9, 1.3, 0.65, 2.0
NOISE_SIGMA = 0.02  # attenuation units: mild, a few grey levels
CUPPING = 0.10  # the centre of the holder reads up to 10 % darker (beam hardening)

# dtype -> (scale, offset, lowest, highest): stored = round(value * scale + offset), clipped.
# int16 is Hounsfield-like: water (0.5) -> 0, air -> -1000, every material above 0.
_MAPS: dict[str, tuple[float, float, float, float]] = {
    "uint8": (100.0, 20.0, 0.0, 255.0),
    "uint16": (20000.0, 2000.0, 0.0, 65535.0),
    "int16": (2000.0, -1000.0, -32768.0, 32767.0),
    "float32": (1.0, 0.0, -math.inf, math.inf),
}

# Geometry in normalised coordinates: t = (z + 0.5) / Z along the axis, (py, px) in units of
# R = min(Y, X) / 2 from the centre of the field.
_HOLDER_T = (0.06, 0.94)  # tube from the floor to the open top; slices outside are air only
_FLOOR_T = (0.06, 0.10)
_HOLDER_R = (0.80, 0.88)  # inner and outer radius of the tube wall
# (t, py, px) centre, (t, py, px) semi-axes, value; painted in this order (later wins)
_ELLIPSOIDS: tuple[tuple[Shape3F, Shape3F, float], ...] = (
    ((0.50, 0.02, -0.03), (0.38, 0.62, 0.70), SPECIMEN),
    ((0.40, -0.38, -0.30), (0.06, 0.10, 0.08), AIR),  # a pore
    ((0.52, 0.08, 0.05), (0.26, 0.38, 0.45), DENSE),
    ((0.50, 0.12, 0.10), (0.14, 0.18, 0.22), CORE),
)
_N_INCLUSIONS = 6
_INCLUSION_R = (0.035, 0.055)  # radius range in units of R (spheres in voxel units)
_NOISE_PAD = 256  # the noise field is (Y + pad, X + pad); each slice takes a shifted window


@dataclass(frozen=True)
class PhantomLayout:
    """Where things are in a phantom of one shape and seed, in voxel units (for tests and demos).

    ``occupied_z`` is the half-open range of slices holding material; ``inclusions`` lists
    ``(z, y, x, radius)`` centres in voxel index coordinates; ``levels`` maps each material
    (air, holder, specimen, dense, core, inclusion) to its nominal stored value in ``dtype``
    before cupping and noise.
    """

    shape: Shape3
    dtype: str
    occupied_z: tuple[int, int]
    holder_radius: tuple[float, float]
    inclusions: tuple[tuple[float, float, float, float], ...]
    levels: dict[str, float]


@dataclass(frozen=True)
class _Scene:
    """Everything shared by the slices of one (shape, dtype, seed): built once, then read-only."""

    shape: Shape3
    ellipsoids: tuple[tuple[Shape3F, Shape3F, float], ...]  # values already scaled
    holder: float
    noise: np.ndarray  # (Y + pad, X + pad) float32, sigma and offset applied
    shading: np.ndarray  # (Y, X) float32 multiplicative cupping, 1 outside the holder
    scale: float
    offset: float
    clip: tuple[float, float]
    integer: bool
    seed: int


def _check(shape: Shape3, dtype: str) -> tuple[Shape3, str]:
    sizes = tuple(int(n) for n in shape)
    if len(sizes) != 3 or min(sizes) < 1:
        raise ValueError(f"shape must be three positive sizes (z, y, x), got {sizes}")
    shape = (sizes[0], sizes[1], sizes[2])
    name = np.dtype(dtype).name
    if name not in _MAPS:
        raise ValueError(f"dtype must be one of {sorted(_MAPS)}, got {dtype!r}")
    return shape, name


def _mix(*values: int) -> int:
    """A small stable integer hash (splitmix64 steps), for per-slice noise offsets."""
    h = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for v in values:
        h = (h ^ (v & mask)) * 0xBF58476D1CE4E5B9 & mask
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & mask
        h ^= h >> 29
    return h


def _inclusions(shape: Shape3, seed: int) -> list[tuple[Shape3F, Shape3F, float]]:
    """Seeded small spheres (in voxel units) well inside the specimen, not touching each other."""
    z, y, x = shape
    big_r = min(y, x) / 2
    rng = np.random.default_rng([seed, 0xC7])
    (tc, yc, xc), (tz, sy, sx), _ = _ELLIPSOIDS[0]
    placed: list[tuple[Shape3F, Shape3F, float]] = []
    for _ in range(2000):
        if len(placed) == _N_INCLUSIONS:
            break
        r = rng.uniform(*_INCLUSION_R)
        u = rng.uniform(-1, 1, 3)
        if float(u @ u) > 0.45:  # keep clear of the specimen's surface
            continue
        c = (tc + u[0] * tz, yc + u[1] * sy, xc + u[2] * sx)
        semi = (r * big_r / z, r, r)
        far = all(
            ((c[0] - p[0]) * z) ** 2 + ((c[1] - p[1]) * big_r) ** 2 + ((c[2] - p[2]) * big_r) ** 2
            > ((r + q[1]) * big_r * 1.5) ** 2
            for p, q, _ in placed
        )
        if far:
            placed.append((c, semi, INCLUSION))
    return placed


@lru_cache(maxsize=4)
def _scene(shape: Shape3, dtype: str, seed: int) -> _Scene:
    scale, offset, lo, hi = _MAPS[dtype]
    _, ny, nx = shape
    big_r = min(ny, nx) / 2
    shapes = [*_ELLIPSOIDS, *_inclusions(shape, seed)]
    rng = np.random.default_rng([seed, 0x4E])
    noise = rng.standard_normal((ny + _NOISE_PAD, nx + _NOISE_PAD), dtype=np.float32)
    noise *= np.float32(NOISE_SIGMA * scale)
    noise += np.float32(offset)
    py = ((np.arange(ny, dtype=np.float32) + 0.5 - ny / 2) / big_r) ** 2
    px = ((np.arange(nx, dtype=np.float32) + 0.5 - nx / 2) / big_r) ** 2
    r2 = np.minimum((py[:, None] + px[None, :]) / np.float32(_HOLDER_R[1] ** 2), 1)
    shading = (1 - CUPPING) + np.float32(CUPPING) * r2
    return _Scene(
        shape=shape,
        ellipsoids=tuple((c, s, v * scale) for c, s, v in shapes),
        holder=HOLDER * scale,
        noise=noise,
        shading=shading.astype(np.float32, copy=False),
        scale=scale,
        offset=offset,
        clip=(lo, hi),
        integer=np.dtype(dtype).kind in "iu",
        seed=seed,
    )


def _spans(
    ny: int, nx: int, big_r: float, cy: float, cx: float, ay: float, ax: float
) -> tuple[int, np.ndarray, np.ndarray] | None:
    """Rows and per-row inclusive column spans of pixel centres inside an ellipse, or None."""
    y0 = max(0, math.ceil((cy - ay) * big_r + ny / 2 - 0.5))
    y1 = min(ny - 1, math.floor((cy + ay) * big_r + ny / 2 - 0.5))
    if y1 < y0 or ax <= 0:
        return None
    rows = (np.arange(y0, y1 + 1, dtype=np.float64) + 0.5 - ny / 2) / big_r
    d = np.clip(1 - ((rows - cy) / ay) ** 2, 0, None)
    hw = ax * np.sqrt(d)
    x0 = np.maximum(np.ceil((cx - hw) * big_r + nx / 2 - 0.5), 0).astype(np.int32)
    x1 = np.minimum(np.floor((cx + hw) * big_r + nx / 2 - 0.5), nx - 1).astype(np.int32)
    return y0, x0, x1


def _paint(
    img: np.ndarray,
    spans: tuple[int, np.ndarray, np.ndarray] | None,
    value: float,
    hole: tuple[int, np.ndarray, np.ndarray] | None = None,
) -> tuple[int, int, int, int] | None:
    """Set pixels inside the spans (minus a hole's spans) to value; return the box touched.

    A loop of row slices writes only the pixels inside, cheaper than a full-box mask.
    """
    if spans is None:
        return None
    y0, x0, x1 = spans
    value = float(value)
    holes: dict[int, tuple[int, int]] = {}
    if hole is not None:
        h0, hx0, hx1 = hole
        pairs = zip(hx0.tolist(), hx1.tolist(), strict=True)
        holes = {h0 + r: ab for r, ab in enumerate(pairs)}
    for r, (a, b) in enumerate(zip(x0.tolist(), x1.tolist(), strict=True)):
        row = img[y0 + r]
        gap = holes.get(y0 + r)
        if gap is None or gap[1] < gap[0]:
            row[a : b + 1] = value
        else:
            row[a : gap[0]] = value
            row[gap[1] + 1 : b + 1] = value
    if x1.max() < x0.min():
        return None
    return y0, y0 + len(x0), int(x0.min()), int(x1.max()) + 1


def _render(i: int, scene: _Scene, out: np.ndarray) -> None:
    """Render slice i of the scene into the float32 (Y, X) buffer out, in stored units."""
    nz, ny, nx = scene.shape
    big_r = min(ny, nx) / 2
    t = (i + 0.5) / nz
    out.fill(0)
    box = None
    if _HOLDER_T[0] <= t <= _HOLDER_T[1]:
        outer = _spans(ny, nx, big_r, 0, 0, _HOLDER_R[1], _HOLDER_R[1])
        inner = None  # the floor is a full disk, the tube above it a ring
        if not _FLOOR_T[0] <= t <= _FLOOR_T[1]:
            inner = _spans(ny, nx, big_r, 0, 0, _HOLDER_R[0], _HOLDER_R[0])
        box = _paint(out, outer, scene.holder, inner)
    for (tc, cy, cx), (tz, sy, sx), value in scene.ellipsoids:
        d = 1 - ((t - tc) / tz) ** 2
        if d < 0:
            continue
        k = math.sqrt(d)
        _paint(out, _spans(ny, nx, big_r, cy, cx, sy * k, sx * k), value)
    if box is not None:
        y0, y1, x0, x1 = box
        out[y0:y1, x0:x1] *= scene.shading[y0:y1, x0:x1]
    h = _mix(scene.seed, i)
    oy, ox = h % _NOISE_PAD, (h >> 20) % _NOISE_PAD
    out += scene.noise[oy : oy + ny, ox : ox + nx]
    if scene.integer:  # round, then clip to the type's range
        np.rint(out, out=out)
        np.clip(out, *scene.clip, out=out)


_scratch = threading.local()


def _slice_into(i: int, scene: _Scene, dtype: str, out: np.ndarray) -> np.ndarray:
    """Render slice i into out (any of the supported dtypes), reusing a per-thread buffer."""
    if dtype == "float32":
        _render(i, scene, out)
        return out
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.shape != out.shape:
        buf = _scratch.buf = np.empty(out.shape, np.float32)
    _render(i, scene, buf)
    np.copyto(out, buf, casting="unsafe")
    return out


def phantom_slice(
    i: int, shape: Shape3 = (64, 256, 256), dtype: str = "uint16", seed: int = 0
) -> np.ndarray:
    """Return slice i (2D) of ``phantom(shape, dtype, seed)``, computed on its own."""
    shape, dtype = _check(shape, dtype)
    if not 0 <= i < shape[0]:
        raise IndexError(f"slice {i} is outside 0..{shape[0] - 1}")
    out = np.empty(shape[1:], dtype)
    return _slice_into(int(i), _scene(shape, dtype, int(seed)), dtype, out)


def phantom(shape: Shape3 = (64, 256, 256), dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """Return the whole phantom volume (z, y, x): deterministic for a given shape, dtype, seed."""
    shape, dtype = _check(shape, dtype)
    scene = _scene(shape, dtype, int(seed))
    vol = np.empty(shape, dtype)
    for i in range(shape[0]):
        _slice_into(i, scene, dtype, vol[i])
    return vol


def phantom_layout(
    shape: Shape3 = (64, 256, 256), dtype: str = "uint16", seed: int = 0
) -> PhantomLayout:
    """Describe the phantom's geometry in voxels and its nominal grey levels in ``dtype``."""
    shape, dtype = _check(shape, dtype)
    nz, ny, nx = shape
    big_r = min(ny, nx) / 2
    scale, offset, lo, hi = _MAPS[dtype]
    occupied = [i for i in range(nz) if _HOLDER_T[0] <= (i + 0.5) / nz <= _HOLDER_T[1]]
    z_range = (occupied[0], occupied[-1] + 1) if occupied else (0, 0)
    incl = tuple(
        (
            float(c[0] * nz - 0.5),
            float(c[1] * big_r + ny / 2 - 0.5),
            float(c[2] * big_r + nx / 2 - 0.5),
            float(s[1] * big_r),
        )
        for c, s, _ in _inclusions(shape, int(seed))
    )
    names = {
        "air": AIR,
        "holder": HOLDER,
        "specimen": SPECIMEN,
        "dense": DENSE,
        "core": CORE,
        "inclusion": INCLUSION,
    }
    levels = {k: float(min(max(round(v * scale + offset), lo), hi)) for k, v in names.items()}
    if dtype == "float32":
        levels = {k: float(v) for k, v in names.items()}
    return PhantomLayout(
        shape=shape,
        dtype=dtype,
        occupied_z=z_range,
        holder_radius=(_HOLDER_R[0] * big_r, _HOLDER_R[1] * big_r),
        inclusions=incl,
        levels=levels,
    )


def _skyscan_log(shape: Shape3, dtype: str, prefix: str, digits: int, voxel_um: float) -> str:
    """A SkyScan/NRecon-style reconstruction log (CRLF, like the Windows originals)."""
    nz, ny, nx = shape
    bits = np.dtype(dtype).itemsize * 8
    lines = [
        "[System]",
        "Scanner=ctstack phantom",
        "Instrument S/N=0",
        "Software=ctstack.sample",
        "[Acquisition]",
        f"Number of Rows={ny}",
        f"Number of Columns={nx}",
        f"Image Pixel Size (um)={voxel_um:.6f}",
        "Filter=none",
        "[Reconstruction]",
        "Reconstruction Program=ctstack.sample.write_phantom_stack",
        f"Dataset Prefix={prefix}",
        "Result File Type=TIF",
        f"Result Image Width (pixels)={nx}",
        f"Result Image Height (pixels)={ny}",
        f"Pixel Size (um)={voxel_um:.6f}",
        f"Filename Index Length={digits}",
        "First Section=0",
        f"Last Section={nz - 1}",
        f"Sections Count={nz}",
        f"Result Image Bits Depth={bits}",
        f"Result Data Type={dtype}",
    ]
    return "\r\n".join(lines) + "\r\n"


def write_phantom_stack(
    folder: str | os.PathLike[str],
    shape: Shape3 = (64, 256, 256),
    dtype: str = "uint16",
    seed: int = 0,
    prefix: str = "phantom_",
    digits: int | None = None,
    voxel_size_um: float | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> list[Path]:
    """Write the phantom as numbered uncompressed TIFF slices, slice by slice in constant memory.

    Existing files of the same names are replaced. With ``voxel_size_um`` a SkyScan-style
    ``<prefix>.log`` records the voxel size, as a scanner would. Returns the slice paths in order.
    """
    import tifffile

    shape, dtype = _check(shape, dtype)
    nz = shape[0]
    digits = max(4, len(str(nz - 1))) if digits is None else int(digits)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}{i:0{digits}d}.tif" for i in range(nz)]
    scene = _scene(shape, dtype, int(seed))
    local = threading.local()

    def work(i: int) -> None:
        out = getattr(local, "out", None)
        if out is None:
            out = local.out = np.empty(shape[1:], dtype)
        _slice_into(i, scene, dtype, out)
        tifffile.imwrite(paths[i], out, photometric="minisblack", metadata=None)

    workers = max(1, min(4, os.cpu_count() or 1))
    # a bounded window in flight keeps memory constant
    with ReadAhead(work, threads=workers, ahead=2 * workers + 1, name="phantom") as pool:
        for done, _ in enumerate(pool.map(range(nz)), start=1):
            if progress is not None:
                progress(done, nz)
    if voxel_size_um is not None:
        log = folder / f"{prefix.rstrip('_') or 'phantom'}.log"
        log.write_bytes(_skyscan_log(shape, dtype, prefix, digits, float(voxel_size_um)).encode())
    return paths
