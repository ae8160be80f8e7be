"""The synthetic CT phantom: deterministic, slice-addressable, CT-like, written like a scanner."""

from __future__ import annotations

import configparser

import numpy as np
import pytest
import tifffile

from ctstack.sample import phantom, phantom_layout, phantom_slice, write_phantom_stack

SHAPE = (40, 96, 112)  # small, non-square, so y and x mix-ups show
DTYPES = ("uint8", "uint16", "int16", "float32")


def _disk_ring(shape: tuple[int, int, int], r0: float, r1: float) -> np.ndarray:
    """Plain-numpy mask of pixel centres at radius [r0, r1) from the field centre (y, x)."""
    _, ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    r = np.hypot(yy + 0.5 - ny / 2, xx + 0.5 - nx / 2)
    return (r >= r0) & (r < r1)


def test_same_seed_same_bytes_other_seed_differs():
    a = phantom(SHAPE, "uint16", seed=3)
    assert a.tobytes() == phantom(SHAPE, "uint16", seed=3).tobytes()
    b = phantom(SHAPE, "uint16", seed=4)
    assert a.shape == b.shape and not np.array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_slice_equals_volume_slice(dtype):
    vol = phantom(SHAPE, dtype, seed=1)
    assert vol.shape == SHAPE and vol.dtype == np.dtype(dtype)
    for i in (0, 1, SHAPE[0] // 2, SHAPE[0] - 1):
        s = phantom_slice(i, SHAPE, dtype, seed=1)
        assert s.shape == SHAPE[1:] and s.dtype == np.dtype(dtype)
        assert s.tobytes() == vol[i].tobytes()


def test_default_shape_and_dtype():
    vol = phantom()
    assert vol.shape == (64, 256, 256) and vol.dtype == np.uint16
    assert np.array_equal(phantom_slice(10), vol[10])


@pytest.mark.parametrize("dtype", DTYPES)
def test_structure_per_dtype(dtype):
    vol = phantom(SHAPE, dtype)
    lay = phantom_layout(SHAPE, dtype)
    lv = lay.levels
    assert lv["air"] < lv["holder"] < lv["specimen"] < lv["dense"] < lv["inclusion"]
    z0, z1 = lay.occupied_z
    assert 0 < z0 < z1 < SHAPE[0]  # empty slices at both ends
    mid = vol[SHAPE[0] // 2].astype(np.float64)

    # end slices hold only air (noise around the air level, far below the holder)
    gap = lv["holder"] - lv["air"]
    for end in (vol[:z0], vol[z1:]):
        assert end.size and abs(float(end.mean()) - lv["air"]) < 0.05 * gap
        assert float(end.max()) < lv["air"] + 0.5 * gap
    assert vol[z0].max() > lv["air"] + 0.5 * gap  # the first occupied slice has the floor

    # air outside the holder, the ring brighter, the specimen brighter still
    r_in, r_out = lay.holder_radius
    air = mid[_disk_ring(SHAPE, r_out + 2, 1e9)]
    ring = mid[_disk_ring(SHAPE, r_in + 1, r_out - 1)]
    centre = mid[_disk_ring(SHAPE, 0, 0.2 * r_in)]
    assert air.size and ring.size and centre.size
    assert np.median(air) < np.median(ring) < np.median(centre)
    assert abs(np.median(air) - lv["air"]) < 0.05 * gap
    assert abs(np.median(ring) - lv["holder"]) < 0.2 * gap

    # every inclusion centre is brighter than anything that is not an inclusion
    incl_vals = []
    not_incl = np.ones(SHAPE, bool)
    zz, yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    for z, y, x, r in lay.inclusions:
        incl_vals.append(vol[round(z), round(y), round(x)])
        not_incl &= (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 > (r + 2) ** 2
    assert len(lay.inclusions) >= 3
    assert min(incl_vals) > vol[not_incl].max()


def test_int16_is_hounsfield_like_and_float32_attenuation_like():
    hu = phantom(SHAPE, "int16")
    assert -1100 < np.median(hu[0]) < -900  # air
    mid = hu[SHAPE[0] // 2].astype(float)
    spec = mid[_disk_ring(SHAPE, 0, 10)]
    assert np.median(spec) > 0  # material above water
    mu = phantom(SHAPE, "float32")
    assert abs(float(np.median(mu[0]))) < 0.01
    assert 1.5 < float(mu.max()) < 2.5


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_otsu_separates_specimen_from_air(dtype):
    from skimage.filters import threshold_otsu

    vol = phantom(SHAPE, dtype)
    lay = phantom_layout(SHAPE, dtype)
    t = threshold_otsu(vol)
    assert lay.levels["air"] < t < lay.levels["specimen"]
    fg = np.nonzero((vol > t).any(axis=(1, 2)))[0]
    assert (fg[0], fg[-1] + 1) == lay.occupied_z  # auto-crop in z finds the occupied slices


def test_inclusions_visible_at_coarse_levels():
    shape = (64, 512, 512)
    vol = phantom(shape, "uint16").astype(np.float64)
    lay = phantom_layout(shape, "uint16")
    f = 8  # three 2x2x2 pyramid levels down: 8 x 64 x 64
    coarse = vol.reshape(8, f, 64, f, 64, f).mean(axis=(1, 3, 5))
    spec = lay.levels["dense"]
    hits = [coarse[int(z // f), int(y // f), int(x // f)] for z, y, x, _ in lay.inclusions]
    assert sum(h > spec for h in hits) >= len(hits) // 2


@pytest.mark.parametrize(
    "shape", [(1, 32, 32), (1, 1, 1), (3, 5, 7), (7, 33, 17), (2, 64, 9), (5, 1, 40)]
)
def test_odd_shapes(shape):
    vol = phantom(shape, "uint16", seed=2)
    assert vol.shape == shape
    for i in range(shape[0]):
        assert np.array_equal(phantom_slice(i, shape, "uint16", seed=2), vol[i])


def test_bad_arguments():
    with pytest.raises(ValueError):
        phantom((0, 8, 8))
    with pytest.raises(ValueError):
        phantom((4, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        phantom((4, 8, 8), "int64")
    with pytest.raises(IndexError):
        phantom_slice(4, (4, 8, 8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_writer_round_trip(tmp_path, dtype):
    shape = (12, 40, 56)
    calls: list[tuple[int, int]] = []
    paths = write_phantom_stack(
        tmp_path / "stack", shape, dtype, seed=5, progress=lambda d, t: calls.append((d, t))
    )
    names = [f"phantom_{i:04d}.tif" for i in range(shape[0])]
    assert [p.name for p in paths] == names
    assert sorted(p.name for p in (tmp_path / "stack").iterdir()) == names  # no log, no extras
    vol = np.stack([tifffile.imread(p) for p in paths])
    assert vol.dtype == np.dtype(dtype)
    assert np.array_equal(vol, phantom(shape, dtype, seed=5))
    with tifffile.TiffFile(paths[0]) as tif:
        assert tif.pages[0].compression == 1  # uncompressed
        assert len(tif.pages) == 1
    assert [d for d, _ in calls] == list(range(1, shape[0] + 1))
    assert all(t == shape[0] for _, t in calls)


def test_writer_names_digits_and_log(tmp_path):
    shape = (3, 16, 16)
    paths = write_phantom_stack(tmp_path, shape, prefix="rock_", digits=6, voxel_size_um=12.5)
    assert [p.name for p in paths] == ["rock_000000.tif", "rock_000001.tif", "rock_000002.tif"]
    log = tmp_path / "rock.log"
    assert log.is_file()
    raw = log.read_bytes()
    assert b"\r\n" in raw  # Windows line ends, as SkyScan writes them
    cfg = configparser.ConfigParser(strict=False, interpolation=None)
    cfg.optionxform = str  # type: ignore[assignment,method-assign]
    cfg.read_string(raw.decode())
    assert cfg["System"]["Scanner"] == "ctstack phantom"
    assert float(cfg["Acquisition"]["Image Pixel Size (um)"]) == 12.5
    assert float(cfg["Reconstruction"]["Pixel Size (um)"]) == 12.5
    assert any(line.startswith("Pixel Size (um)=") for line in raw.decode().splitlines())


def test_writer_default_digits_grow_with_count(tmp_path, monkeypatch):
    written: list[str] = []
    monkeypatch.setattr(tifffile, "imwrite", lambda path, *a, **k: written.append(path.name))
    paths = write_phantom_stack(tmp_path, (10001, 1, 1))  # 5 digits needed; skip the disk
    assert paths[0].name == "phantom_00000.tif" and paths[-1].name == "phantom_10000.tif"
    assert sorted(written) == [p.name for p in paths]
