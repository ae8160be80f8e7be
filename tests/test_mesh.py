"""Meshes parsed back and compared with marching cubes run here on the reference region."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest
from skimage.measure import marching_cubes

import ctstack
from ctstack.errors import Cancelled, ExportError
from ctstack.sample import phantom
from tests.test_export_reference import (
    VOXEL,
    level_slices,
    reference_levels,
    snapshot,
    write_slices,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHAPE = (70, 40, 44)  # > 2 slabs of 32 planes at level 0
REGION = ((3, 69), (5, 37), (2, 41))
THRESHOLD = 10000.0


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mesh") / "stack"
    vol = phantom(SHAPE, "uint16", 2)
    write_slices(folder, vol)
    stack = ctstack.open_stack(folder)
    stack.build_pyramid(max_size=16)
    return stack, reference_levels(vol, 2)


def read_stl(path):
    data = path.read_bytes()
    (n,) = struct.unpack_from("<I", data, 80)
    rec = np.frombuffer(
        data, dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")], count=n, offset=84
    )
    assert len(data) == 84 + 50 * n
    return rec["v"].reshape(-1, 3), n


def read_ply(path):
    data = path.read_bytes()
    head, body = data.split(b"end_header\n", 1)
    lines = head.decode().splitlines()
    assert lines[1] == "format binary_little_endian 1.0"
    nv = int(next(x for x in lines if x.startswith("element vertex")).split()[-1])
    nf = int(next(x for x in lines if x.startswith("element face")).split()[-1])
    verts = np.frombuffer(body, "<f4", count=3 * nv).reshape(nv, 3)
    faces = np.frombuffer(body, dtype=[("n", "u1"), ("i", "<i4", 3)], count=nf, offset=12 * nv)
    assert (faces["n"] == 3).all() and len(body) == 12 * nv + 13 * nf
    return verts, faces["i"]


def read_obj(path):
    verts, faces = [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            verts.append([float(v) for v in line.split()[1:]])
        elif line.startswith("f "):
            faces.append([int(v) - 1 for v in line.split()[1:]])
    return np.array(verts), np.array(faces)


def expected(ref, level, invert=False):
    """Marching cubes on the reference region, vertices as world (x, y, z)."""
    f = 1 << level
    sl = level_slices(REGION, level)
    vol = ref[level][sl].astype(np.float32)
    spacing = tuple(v * f for v in VOXEL)
    verts, faces, _, _ = marching_cubes(
        vol, THRESHOLD, spacing=spacing, gradient_direction="ascent" if invert else "descent"
    )
    origin = np.array([(s.start * f + (f - 1) / 2) * v for s, v in zip(sl, VOXEL, strict=False)])
    return (verts + origin)[:, ::-1], faces


@pytest.mark.parametrize("ext,level", [("ply", 0), ("obj", 1), ("stl", 0), ("ply", 2)])
def test_mesh_matches_marching_cubes_in_world_coordinates(src, tmp_path, ext, level):
    stack, ref = src
    before = snapshot(stack.path)
    out = tmp_path / f"m.{ext}"
    res = ctstack.mesh(
        stack,
        out,
        THRESHOLD,
        level=level,
        **dict(zip("zyx", (slice(*r) for r in REGION), strict=False)),
    )
    want_v, want_f = expected(ref, level)
    if ext == "stl":
        tri, n = read_stl(out)
        assert n == len(want_f) == res.extra["faces"]
        got_v = tri
        np.testing.assert_allclose(
            np.sort(tri.sum(axis=0)), np.sort(want_v[want_f].reshape(-1, 3).sum(axis=0)), rtol=1e-4
        )
    else:
        got_v, got_f = read_ply(out) if ext == "ply" else read_obj(out)
        assert len(got_v) == len(want_v) == res.extra["vertices"]
        assert len(got_f) == len(want_f) == res.extra["faces"]
        # the same triangles (as world-coordinate vertex triples), whatever the vertex order
        tri_got = np.sort(np.round(got_v[got_f], 2).reshape(len(got_f), 9), axis=0)
        tri_want = np.sort(np.round(want_v[want_f], 2).reshape(len(want_f), 9), axis=0)
        np.testing.assert_allclose(tri_got, tri_want, atol=0.02)
    np.testing.assert_allclose(got_v.min(axis=0), want_v.min(axis=0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(got_v.max(axis=0), want_v.max(axis=0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(res.extra["bounds"], [want_v.min(0), want_v.max(0)], atol=1e-3)
    assert snapshot(stack.path) == before


def test_invert_flips_winding(src, tmp_path):
    stack, ref = src
    region = dict(zip("zyx", (slice(*r) for r in REGION), strict=False))
    a = ctstack.mesh(stack, tmp_path / "a.ply", THRESHOLD, level=1, **region)
    b = ctstack.mesh(stack, tmp_path / "b.ply", THRESHOLD, level=1, invert=True, **region)
    va, fa = read_ply(tmp_path / "a.ply")
    vb, fb = read_ply(tmp_path / "b.ply")
    _want_v, want_f = expected(ref, 1, invert=True)
    assert a.extra["faces"] == b.extra["faces"] == len(want_f)
    na = np.cross(va[fa[:, 1]] - va[fa[:, 0]], va[fa[:, 2]] - va[fa[:, 0]]).sum(0)
    nb = np.cross(vb[fb[:, 1]] - vb[fb[:, 0]], vb[fb[:, 2]] - vb[fb[:, 0]]).sum(0)
    assert not np.allclose(na, nb)


def test_mesh_refusals_and_cancel(src, tmp_path):
    stack, _ = src
    with pytest.raises(ExportError, match=r"\.stl, \.ply or \.obj"):
        ctstack.mesh(stack, tmp_path / "m.vtk", THRESHOLD)
    (tmp_path / "m.stl").write_bytes(b"old")
    with pytest.raises(ExportError, match="already exists"):
        ctstack.mesh(stack, tmp_path / "m.stl", THRESHOLD)
    assert (tmp_path / "m.stl").read_bytes() == b"old"
    cancel = threading.Event()

    def progress(done, total):
        if done == 40:
            cancel.set()

    with pytest.raises(Cancelled):
        ctstack.mesh(stack, tmp_path / "c.ply", THRESHOLD, progress=progress, cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.stl"]


def test_mesh_in_memory_equals_the_file(src, tmp_path):
    """Without ``out`` the mesh comes back as arrays, the same as the file's; with ``out`` and
    ``keep=True`` both; the ExportResult stays available for the CLI and batch."""
    stack, ref = src
    region = dict(zip("zyx", (slice(*r) for r in REGION), strict=False))
    before = sorted(tmp_path.iterdir())
    m = ctstack.mesh(stack, None, THRESHOLD, level=1, **region)
    assert m.result is None and sorted(tmp_path.iterdir()) == before  # nothing written
    want_v, want_f = expected(ref, 1)
    assert m.vertices.dtype == np.float32 and m.faces.dtype == np.int64
    assert m.n_vertices == len(m.vertices) == len(want_v) and m.n_faces == len(want_f)
    tri_got = np.sort(np.round(m.vertices[m.faces], 2).reshape(len(m.faces), 9), axis=0)
    tri_want = np.sort(np.round(want_v[want_f], 2).reshape(len(want_f), 9), axis=0)
    np.testing.assert_allclose(tri_got, tri_want, atol=0.02)
    np.testing.assert_allclose(m.zyx, m.vertices[:, ::-1])
    both = ctstack.mesh(stack, tmp_path / "m.ply", THRESHOLD, level=1, keep=True, **region)
    v, f = read_ply(tmp_path / "m.ply")
    np.testing.assert_array_equal(both.vertices, v)
    np.testing.assert_array_equal(both.faces, f)
    assert both.result.path == tmp_path / "m.ply" and both.result.extra == both.extra
    assert both.extra["faces"] == m.n_faces and both.bounds == m.bounds
    only_file = ctstack.mesh(stack, tmp_path / "n.stl", THRESHOLD, level=1, **region)
    assert only_file.vertices is None and only_file.result.extra["faces"] == m.n_faces
    with pytest.raises(ExportError, match="needs a threshold"):
        ctstack.mesh(stack)
