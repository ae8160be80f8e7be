"""Formats and types: TIFF (plain, compressed, multi-page), PNG/BMP/JPEG, colour, dtype mapping,
OME-Zarr, and laziness. Expected values come from tifffile/Pillow/zarr read directly."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from ctstack import open_stack
from ctstack.errors import UnsupportedDtype

RNG = np.random.default_rng(3)


def quiet_open(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_stack(path, **kw)


def rand(shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.normal(size=shape).astype(dtype)
    if dtype == np.bool_:
        return RNG.integers(0, 2, shape).astype(bool)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "uint32", "float64"])
@pytest.mark.parametrize("compression", [None, "zlib", "lzw"])
def test_tiff_slices_round_trip(tmp_path, dtype, compression):
    arrays = [rand((7, 9), dtype) for _ in range(3)]
    for i, a in enumerate(arrays):
        tifffile.imwrite(tmp_path / f"t_{i}.tif", a, compression=compression)
    stack = quiet_open(tmp_path)
    assert stack.dtype == np.dtype(dtype) and stack.shape == (3, 7, 9)
    for i in range(3):
        np.testing.assert_array_equal(
            stack.data[i].compute(), tifffile.imread(tmp_path / f"t_{i}.tif")
        )


@pytest.mark.parametrize(
    ("stored", "expected"),
    [("int8", "int16"), ("float16", "float32"), ("bool", "uint8")],
)
def test_other_dtypes_are_widened(tmp_path, stored, expected):
    arr = rand((5, 4), stored)
    tifffile.imwrite(tmp_path / "w_0.tif", arr)
    tifffile.imwrite(tmp_path / "w_1.tif", arr)
    stack = quiet_open(tmp_path)
    assert stack.dtype == np.dtype(expected)
    np.testing.assert_array_equal(stack.read_slice(1), arr.astype(expected))


def test_int64_is_refused_with_a_clear_error(tmp_path):
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((4, 4), np.int64))
    with pytest.raises(UnsupportedDtype, match=r"big\.tif.*int64"):
        open_stack(tmp_path / "big.tif")


@pytest.mark.parametrize(("fmt", "ext"), [("PNG", "png"), ("BMP", "bmp")])
def test_8bit_pillow_formats(tmp_path, fmt, ext):
    arrays = [rand((6, 8), "uint8") for _ in range(3)]
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / f"p_{i}.{ext}", format=fmt)
    stack = quiet_open(tmp_path)
    assert stack.dtype == np.uint8
    for i in range(3):
        with Image.open(tmp_path / f"p_{i}.{ext}") as im:
            np.testing.assert_array_equal(stack.read_slice(i), np.asarray(im))


def test_16bit_png(tmp_path):
    a = rand((6, 8), "uint16")
    Image.fromarray(a).save(tmp_path / "p_0.png")
    Image.fromarray(a[::-1].copy()).save(tmp_path / "p_1.png")
    stack = quiet_open(tmp_path)
    assert stack.dtype == np.uint16
    np.testing.assert_array_equal(stack.read_slice(1), a[::-1])


def test_jpeg_slices_match_pillow(tmp_path):
    for i in range(2):
        Image.fromarray(rand((16, 16), "uint8")).save(tmp_path / f"j_{i}.jpg", quality=90)
    stack = quiet_open(tmp_path)
    with Image.open(tmp_path / "j_1.jpg") as im:
        np.testing.assert_array_equal(stack.read_slice(1), np.asarray(im))


def test_rgb_and_rgba_become_pillow_luminance_with_one_warning(tmp_path):
    rgb = rand((6, 7, 3), "uint8")
    rgba = rand((6, 7, 4), "uint8")
    Image.fromarray(rgb).save(tmp_path / "c_0.png")
    Image.fromarray(rgba).save(tmp_path / "c_1.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack = open_stack(tmp_path)
    colour = [w for w in caught if "luminance" in str(w.message)]
    assert len(colour) == 1
    with Image.open(tmp_path / "c_0.png") as im:
        np.testing.assert_array_equal(stack.read_slice(0), np.asarray(im.convert("L")))
    with Image.open(tmp_path / "c_1.png") as im:
        np.testing.assert_array_equal(stack.read_slice(1), np.asarray(im.convert("L")))


def test_rgb_tiff_matches_pillow_luminance(tmp_path):
    rgb = rand((5, 6, 3), "uint8")
    tifffile.imwrite(tmp_path / "c_0.tif", rgb, photometric="rgb")
    stack = quiet_open(tmp_path / "c_0.tif")
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(stack.read_slice(0), expected)


def test_16bit_rgb_png_uses_the_same_weights_rounded(tmp_path):
    import imagecodecs

    rgb = rand((5, 6, 3), "uint16")
    (tmp_path / "c_0.png").write_bytes(imagecodecs.png_encode(rgb))
    stack = quiet_open(tmp_path / "c_0.png")
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    expected = np.floor(0.299 * r + 0.587 * g + 0.114 * b + 0.5)
    assert stack.dtype == np.uint16
    # 16.16 fixed-point weights differ from the decimals by < 2e-5: at most 1 count apart
    assert np.abs(stack.read_slice(0).astype(np.float64) - expected).max() <= 1


def test_palette_images_are_expanded(tmp_path):
    idx = RNG.integers(0, 4, (5, 6), dtype=np.uint8)
    grey = Image.fromarray(idx, mode="P")
    grey.putpalette([0, 0, 0, 50, 50, 50, 100, 100, 100, 250, 250, 250])
    grey.save(tmp_path / "g_0.png")
    stack = quiet_open(tmp_path / "g_0.png")
    np.testing.assert_array_equal(stack.read_slice(0), np.array([0, 50, 100, 250])[idx])
    assert not any("luminance" in w for w in stack.warnings)
    colour = Image.fromarray(idx, mode="P")
    colour.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    colour.save(tmp_path / "k_0.png")
    stack = quiet_open(tmp_path / "k_0.png")
    with Image.open(tmp_path / "k_0.png") as im:
        expected = np.asarray(im.convert("RGB").convert("L"))
    np.testing.assert_array_equal(stack.read_slice(0), expected)


def test_mixed_8_and_16_bit_open_as_16_bit_with_warning(tmp_path):
    a8 = rand((4, 4), "uint8")
    a16 = rand((4, 4), "uint16")
    tifffile.imwrite(tmp_path / "m_0.tif", a8)
    tifffile.imwrite(tmp_path / "m_1.tif", a16)
    tifffile.imwrite(tmp_path / "m_2.tif", a16)
    with pytest.warns(UserWarning, match="mixed pixel types"):
        stack = open_stack(tmp_path)
    assert stack.dtype == np.uint16
    np.testing.assert_array_equal(stack.read_slice(0), a8.astype(np.uint16))


# --- multi-page TIFF --------------------------------------------------------------------------


def test_imagej_hyperstack_opens_channel_and_warns(tmp_path):
    vol = rand((4, 2, 5, 6), "uint16")  # z, c, y, x
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path,
        vol,
        imagej=True,
        metadata={"axes": "ZCYX", "spacing": 2.5, "unit": "um"},
        resolution=(1 / 0.5, 1 / 0.5),
    )
    with pytest.warns(UserWarning, match="2 channels"):
        stack = open_stack(path)
    assert stack.shape == (4, 5, 6) and stack.files == [path] and stack.root == tmp_path
    np.testing.assert_array_equal(stack.data.compute(), tifffile.imread(path)[:, 0])
    assert stack.voxel_size == pytest.approx((2.5, 0.5, 0.5)) and stack.unit == "micrometer"
    second = quiet_open(path, channel=1)
    np.testing.assert_array_equal(second.read_slice(3), tifffile.imread(path)[3, 1])


def test_ome_tiff_physical_size(tmp_path):
    vol = rand((3, 5, 6), "uint16")
    path = tmp_path / "vol.ome.tif"
    tifffile.imwrite(
        path,
        vol,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.002,
            "PhysicalSizeXUnit": "mm",
            "PhysicalSizeY": 0.002,
            "PhysicalSizeYUnit": "mm",
            "PhysicalSizeZ": 0.004,
            "PhysicalSizeZUnit": "mm",
        },
    )
    stack = quiet_open(path)
    assert stack.shape == (3, 5, 6) and stack.name == "vol"
    assert stack.voxel_size == pytest.approx((0.004, 0.002, 0.002)) and stack.unit == "millimeter"
    np.testing.assert_array_equal(stack.read_slice(2), tifffile.imread(path)[2])


def test_bigtiff_multipage(tmp_path):
    vol = rand((5, 4, 6), "float32")
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, vol, bigtiff=True)
    stack = quiet_open(path)
    assert stack.shape == (5, 4, 6) and stack.dtype == np.float32
    out = np.empty((4, 6), np.float32)
    assert stack.read_slice(4, out=out) is out
    np.testing.assert_array_equal(out, tifffile.imread(path)[4])


# --- laziness ---------------------------------------------------------------------------------


def test_open_reads_no_pixels_and_one_chunk_decodes_one_file(tmp_path, monkeypatch):
    for i in range(5):
        tifffile.imwrite(tmp_path / f"s_{i}.tif", np.full((8, 8), i, np.uint16))
    import ctstack.io.readers as readers

    decoded: list[Path] = []
    real = readers.decode

    def spy(header, dtype, out=None):
        decoded.append(header.path)
        return real(header, dtype, out)

    monkeypatch.setattr(readers, "decode", spy)
    stack = quiet_open(tmp_path)
    assert decoded == []
    assert stack.data.chunksize == (1, 8, 8) and stack.data.numblocks == (5, 1, 1)
    assert int(stack.data[3].max().compute()) == 3
    assert decoded == [tmp_path / "s_3.tif"]
    assert stack.sources() == [tmp_path / f"s_{i}.tif" for i in range(5)]


def test_stack_pickles_for_distributed_workers(tmp_path):
    import pickle

    for i in range(3):
        tifffile.imwrite(tmp_path / f"s_{i}.tif", np.full((4, 4), i + 1, np.uint8))
    stack = quiet_open(tmp_path)
    clone = pickle.loads(pickle.dumps(stack))
    assert clone.data[2].compute().max() == 3


# --- OME-Zarr ---------------------------------------------------------------------------------


def _write_ngff(path: Path, levels: list[np.ndarray], version: str, scale0, translation):
    """A minimal OME-Zarr written with zarr itself (not through ctstack)."""
    import zarr

    fmt = 3 if version == "0.5" else 2
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    datasets = []
    for k, arr in enumerate(levels):
        root.create_array(str(k), data=arr, chunks=(2, *arr.shape[1:]))
        datasets.append(
            {
                "path": str(k),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [s * 2**k for s in scale0]},
                    {"type": "translation", "translation": list(translation)},
                ],
            }
        )
    ms = {
        "axes": [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
        "datasets": datasets,
        "name": "img",
    }
    if version == "0.5":
        root.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    else:
        root.attrs["multiscales"] = [{**ms, "version": "0.4"}]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_levels_scale_and_translation(tmp_path, version):
    level0 = rand((6, 8, 10), "uint16")
    level1 = rand((3, 4, 5), "uint16")
    path = tmp_path / "img.ome.zarr"
    _write_ngff(path, [level0, level1], version, (2.0, 1.0, 1.0), (10.0, 0.0, 5.0))
    stack = quiet_open(path)
    assert stack.shape == (6, 8, 10) and stack.name == "img" and stack.root == tmp_path
    assert stack.voxel_size == (2.0, 1.0, 1.0) and stack.unit == "micrometer"
    assert stack.origin == (10.0, 0.0, 5.0)
    assert [lv.shape for lv in stack.levels] == [(6, 8, 10), (3, 4, 5)]
    assert stack.data.chunksize == (1, 8, 10)
    np.testing.assert_array_equal(stack.data.compute(), level0)
    np.testing.assert_array_equal(stack.levels[1].compute(), level1)
    np.testing.assert_array_equal(stack.read_slice(4), level0[4])
    meta = "zarr.json" if version == "0.5" else ".zattrs"
    assert json.loads((path / meta).read_text())  # really written in that zarr format
