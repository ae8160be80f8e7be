"""Surface meshes of a region: scikit-image marching cubes, slab by slab in bounded memory.

``ctstack.mesh(stack, out=None, threshold, ...)`` is :func:`mesh` re-exported from the package
root; it returns a :class:`Mesh`. Vertices are ``(x, y, z)`` in physical world units (region origin
included: voxel ``i`` of level k sits at ``origin + (i * 2**k + (2**k - 1) / 2) * voxel``).
Without ``out`` the vertices and faces are returned in memory; with ``out`` they stream to a
binary STL, binary PLY or OBJ file chosen by the extension (and are kept in memory only when
``keep=True``). Slabs overlap by one plane and the vertices on that shared plane are merged, so
the mesh equals one marching cubes run over the whole region.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._export.guard import check_target
from ._export.planes import PlaneReader, iter_planes, resolve
from ._export.regions import Region
from ._export.writing import ExportResult, Staging, check_space
from ._types import AxisRange, Progress, StrPath
from .errors import UnsupportedExport

if TYPE_CHECKING:
    from .stack import Stack

MESH_FORMATS = {".stl": "stl", ".ply": "ply", ".obj": "obj"}
SLAB = 32  # planes per marching-cubes call (plus one shared plane)


@dataclass
class Mesh:
    """A surface: ``vertices`` (n, 3) float32 world ``(x, y, z)``, ``faces`` (m, 3) int64.

    ``vertices``/``faces`` are None when the mesh went to a file without ``keep=True``;
    ``result`` says what was written (None without ``out``). ``n_vertices``, ``n_faces`` and
    ``bounds`` (``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``, None when empty) always hold.
    """

    vertices: np.ndarray | None
    faces: np.ndarray | None
    n_vertices: int
    n_faces: int
    bounds: list[list[float]] | None
    threshold: float
    level: int
    region: str
    unit: str
    result: ExportResult | None = None

    @property
    def zyx(self) -> np.ndarray | None:
        """The vertices as ``(z, y, x)`` (napari's axis order)."""
        return None if self.vertices is None else self.vertices[:, ::-1].copy()

    @property
    def extra(self) -> dict[str, Any]:
        """Counts, threshold, bounds and unit (what ``result.extra`` holds for a file)."""
        return {
            "vertices": self.n_vertices,
            "faces": self.n_faces,
            "threshold": self.threshold,
            "bounds": self.bounds,
            "unit": self.unit,
        }


def mesh_format(out: Path) -> str:
    """``stl``, ``ply`` or ``obj`` from the extension, else UnsupportedExport."""
    fmt = MESH_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise UnsupportedExport(f"{out}: mesh files end in .stl, .ply or .obj")
    return fmt


class _Memory:
    """Keeps every slab's vertices and faces, joined on close."""

    def __init__(self) -> None:
        self.verts: list[np.ndarray] = []
        self.faces: list[np.ndarray] = []
        self.vertices: np.ndarray | None = None
        self.triangles: np.ndarray | None = None

    def add(self, verts: np.ndarray, faces: np.ndarray, tri: np.ndarray) -> None:
        self.verts.append(np.asarray(verts, np.float32))
        self.faces.append(np.asarray(faces, np.int64))

    def close(self, ok: bool, n_vertices: int, n_faces: int) -> None:
        if ok:
            self.vertices = np.concatenate([np.empty((0, 3), np.float32), *self.verts])
            self.triangles = np.concatenate([np.empty((0, 3), np.int64), *self.faces])
        self.verts, self.faces = [], []


class _Sink:
    """Receives slabs of (world vertices, faces with global indices) and writes one format."""

    def __init__(self, path: Path, fmt: str, header: str) -> None:
        self.path, self.fmt = path, fmt
        self.n_vertices = self.n_faces = 0
        self.side = [path.with_name(path.name + s) for s in (".v", ".f")] if fmt == "ply" else []
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.parts = [open(p, "wb") for p in self.side]  # noqa: SIM115
        if fmt == "stl":
            self.fh.write(header.encode()[:80].ljust(80, b" ") + struct.pack("<I", 0))
        elif fmt == "obj":
            self.fh.write(f"# {header}\n".encode())

    def add(self, verts: np.ndarray, faces: np.ndarray, tri: np.ndarray) -> None:
        """``verts`` new (x, y, z) vertices; ``faces`` global indices; ``tri`` (n, 3, 3) xyz."""
        if self.fmt == "stl":
            a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
            normal = np.cross(b - a, c - a)
            length = np.linalg.norm(normal, axis=1, keepdims=True)
            normal = np.divide(normal, length, out=np.zeros_like(normal), where=length > 0)
            rec = np.zeros(len(tri), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
            rec["n"], rec["v"] = normal, tri
            self.fh.write(rec.tobytes())
        elif self.fmt == "ply":
            self.parts[0].write(verts.astype("<f4").tobytes())
            rec = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", 3)])
            rec["n"], rec["i"] = 3, faces
            self.parts[1].write(rec.tobytes())
        else:
            lines = [f"v {x:.7g} {y:.7g} {z:.7g}\n" for x, y, z in verts.tolist()]
            lines += [f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces.tolist()]
            self.fh.write("".join(lines).encode())
        self.n_vertices += len(verts)
        self.n_faces += len(faces)

    def close(self, ok: bool, n_vertices: int, n_faces: int) -> None:
        for part in self.parts:
            part.close()
        try:
            if ok and self.fmt == "stl":
                self.fh.seek(80)
                self.fh.write(struct.pack("<I", self.n_faces))
            elif ok and self.fmt == "ply":
                head = (
                    "ply\nformat binary_little_endian 1.0\ncomment ctstack mesh\n"
                    f"element vertex {self.n_vertices}\nproperty float x\n"
                    "property float y\nproperty float z\n"
                    f"element face {self.n_faces}\nproperty list uchar int vertex_indices\n"
                    "end_header\n"
                )
                self.fh.write(head.encode())
                for p in self.side:
                    with open(p, "rb") as src:
                        while chunk := src.read(16 << 20):
                            self.fh.write(chunk)
        finally:
            self.fh.close()
            for p in self.side:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)


class _Slabber:
    """Runs marching cubes on overlapping slabs, merges the vertices of shared planes and hands
    each slab to every sink (a file, memory); counts vertices, faces and bounds."""

    def __init__(
        self,
        sinks: list[_Memory | _Sink],
        threshold: float,
        spacing: tuple[float, float, float],
        origin: tuple[float, float, float],
        invert: bool,
    ) -> None:
        self.sinks = sinks
        self.n_vertices = self.n_faces = 0
        self.lo = np.full(3, np.inf)
        self.hi = np.full(3, -np.inf)
        self.threshold = float(threshold)
        self.spacing = tuple(float(s) for s in spacing)
        self.origin = np.asarray(origin, np.float64)
        self.direction = "ascent" if invert else "descent"
        self.shared: dict[bytes, int] = {}  # (y, x) of last slab's top-plane vertices -> index

    def run(self, slab: np.ndarray, z0: int) -> None:
        from skimage.measure import marching_cubes

        top = (slab.shape[0] - 1) * self.spacing[0]
        lo, hi = float(slab.min()), float(slab.max())
        if slab.shape[0] < 2 or not lo <= self.threshold <= hi or lo == hi:
            self.shared = {}
            return
        verts, faces, _, _ = marching_cubes(
            slab, self.threshold, spacing=self.spacing, gradient_direction=self.direction
        )
        keys = [v.tobytes() for v in verts[:, 1:]]
        index = np.empty(len(verts), np.int64)
        new = np.ones(len(verts), bool)
        base = self.n_vertices
        count = 0
        for i, (zv, key) in enumerate(zip(verts[:, 0], keys, strict=True)):
            if zv == 0.0 and key in self.shared:
                index[i], new[i] = self.shared[key], False
            else:
                index[i] = base + count
                count += 1
        world = verts.astype(np.float64) + self.origin + (z0 * self.spacing[0], 0.0, 0.0)
        xyz = world[:, ::-1].astype(np.float32)
        fresh, tri = xyz[new], index[faces]
        for sink in self.sinks:
            sink.add(fresh, tri, xyz[faces])
        if len(fresh):
            self.lo = np.minimum(self.lo, fresh.min(axis=0))
            self.hi = np.maximum(self.hi, fresh.max(axis=0))
        self.n_vertices += len(fresh)
        self.n_faces += len(tri)
        on_top = np.nonzero(verts[:, 0] == top)[0]
        self.shared = {keys[i]: int(index[i]) for i in on_top}


def mesh(
    stack: Stack | StrPath,
    out: StrPath | None = None,
    threshold: float | None = None,
    level: int = 0,
    z: AxisRange = None,
    y: AxisRange = None,
    x: AxisRange = None,
    invert: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    keep: bool | None = None,
) -> Mesh:
    """The iso-surface at ``threshold`` of a level-0 region, sampled at ``level``.

    Without ``out`` the Mesh holds the vertices and faces. With ``out`` (``.stl``, ``.ply`` or
    ``.obj``) they are written there in bounded memory, kept in the Mesh too only with
    ``keep=True``, and ``mesh.result`` is the ExportResult (its ``extra`` holds vertex and face
    counts and the world bounds ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``).
    ``invert=True`` treats values below the threshold as the object (faces wind the other way).
    """
    from .stack import Stack, open_stack

    if threshold is None:
        raise UnsupportedExport("a mesh needs a threshold (the iso-value of the surface)")
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise UnsupportedExport(f"a mesh threshold must be a finite number, got {threshold}")
    if not isinstance(stack, Stack):
        stack = open_stack(stack)
    keep = out is None if keep is None else bool(keep)
    fmt = ""
    if out is not None:
        fmt = mesh_format(Path(out))
        out = check_target(Path(out), overwrite, stack, fmt)
    region = resolve(stack, z, y, x, int(level), progress, cancel)
    if min(region.shape) < 2:
        raise UnsupportedExport(
            f"{stack.path}: a mesh needs at least 2 voxels along each axis; region "
            f"{region.describe()} is {' x '.join(map(str, region.shape))} at level {level}"
        )
    memory = _Memory() if keep else None
    if out is None:
        kept: list[_Memory | _Sink] = [] if memory is None else [memory]
        slabber = _run(stack, region, threshold, invert, kept, progress, cancel)
        result = None
    else:
        # a generous guess: a surface rarely has more triangles than 4 per voxel of one plane
        check_space(out.parent, 4 * 50 * region.shape[1] * region.shape[2] + (1 << 20))
        header = f"ctstack mesh of {stack.name} {region.describe()} threshold {threshold:g}"
        with Staging(out, overwrite, folder=False, fmt=fmt) as stage:
            sink = _Sink(stage.tmp, fmt, header)
            sinks: list[_Memory | _Sink] = [sink] if memory is None else [sink, memory]
            slabber = _run(stack, region, threshold, invert, sinks, progress, cancel)
            stage.commit()
        result = ExportResult(
            out,
            fmt,
            [out],
            out.stat().st_size,
            stage.elapsed(),
            shape=region.shape,
            dtype="float32",
            level=region.level,
            region=region.describe(),
        )
    bounds = [slabber.lo.tolist(), slabber.hi.tolist()] if slabber.n_vertices else None
    found = Mesh(
        vertices=memory.vertices if memory is not None else None,
        faces=memory.triangles if memory is not None else None,
        n_vertices=slabber.n_vertices,
        n_faces=slabber.n_faces,
        bounds=bounds,
        threshold=threshold,
        level=region.level,
        region=region.describe(),
        unit=region.unit,
        result=result,
    )
    if result is not None:
        result.extra = found.extra
    return found


def _run(
    stack: Stack,
    region: Region,
    threshold: float,
    invert: bool,
    sinks: list[_Memory | _Sink],
    progress: Progress | None,
    cancel: threading.Event | None,
) -> _Slabber:
    """Stream the region's planes through marching cubes into ``sinks``; close them after."""
    reader = PlaneReader(stack, region, None)
    slabber = _Slabber(sinks, threshold, region.voxel_size, region.origin, invert)
    ok = False
    try:
        buf = np.empty((SLAB + 1, *region.shape[1:]), np.float32)
        filled, z0 = 0, 0
        for i, plane in iter_planes(reader, region.shape[0], progress, cancel, "mesh"):
            buf[filled] = plane
            filled += 1
            if filled == SLAB + 1 or i == region.shape[0] - 1:
                slabber.run(buf[:filled], z0)
                buf[0] = buf[filled - 1]
                z0 += filled - 1
                filled = 1
        ok = True
    finally:
        for sink in sinks:
            sink.close(ok, slabber.n_vertices, slabber.n_faces)
    return slabber
