"""Series discovery: name parsing, natural order, numbering step and gaps, ties, ignored files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from ctstack import open_stack
from ctstack.discovery import natural_key, numbering, parse_name
from ctstack.errors import DuplicateSliceNumber, NoSliceSeries


def write_tifs(folder: Path, names, shape=(6, 5), dtype="uint16") -> dict[str, np.ndarray]:
    """Write one small TIFF per name, each filled with a distinct ramp; return name -> pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate(names):
        arr = (np.arange(np.prod(shape)).reshape(shape) + 7 * i).astype(dtype)
        tifffile.imwrite(folder / name, arr)
        out[name] = arr
    return out


def opened(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_stack(path, **kw)


@pytest.mark.parametrize(
    ("name", "prefix", "number", "ext"),
    [
        ("scan_rec00001234.bmp", "scan_rec", 1234, ".bmp"),
        ("vhf.1501.dcm", "vhf.", 1501, ".dcm"),
        ("001.tif", "", 1, ".tif"),
        ("Slice 12.PNG", "Slice ", 12, ".png"),
        ("sample-8bit017.tif", "sample-8bit", 17, ".tif"),
        ("abc.tiff", "abc", None, ".tiff"),
    ],
)
def test_parse_name_takes_last_digit_run(name, prefix, number, ext):
    parsed = parse_name(name)
    assert (parsed.prefix, parsed.number, parsed.extension) == (prefix, number, ext)


def test_natural_key_orders_by_value():
    names = ["s10.tif", "s9.tif", "s100.tif", "s1.tif"]
    assert sorted(names, key=natural_key) == ["s1.tif", "s9.tif", "s10.tif", "s100.tif"]


def test_numbering_step_is_gcd_and_gaps_are_listed():
    num = numbering([100, 102, 108, 104])
    assert num.step == 2 and num.first == 100
    assert num.z == [0, 1, 4, 2]
    assert num.depth == 5 and num.missing == [3]


def test_unpadded_names_open_in_natural_order(tmp_path):
    names = [f"img{i}.tif" for i in (1, 2, 10, 9, 11)]
    pixels = write_tifs(tmp_path, names)
    stack = opened(tmp_path)
    order = ["img1.tif", "img2.tif", "img9.tif", "img10.tif", "img11.tif"]
    assert [f.name for f in stack.files] == order
    # z 0..10 with step 1 -> gaps at 3..8
    assert stack.shape[0] == 11 and stack.missing == [2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(stack.read_slice(8), pixels["img9.tif"])
    np.testing.assert_array_equal(stack.data[9].compute(), pixels["img10.tif"])
    assert not stack.read_slice(4).any()


def test_series_starting_at_100_with_step_2_is_complete(tmp_path):
    names = [f"rec_{n:05d}.tif" for n in range(100, 120, 2)]
    pixels = write_tifs(tmp_path, names)
    stack = opened(tmp_path)
    assert stack.shape == (10, 6, 5) and stack.missing == []
    assert stack.metadata["numbering"] == {"first": 100, "step": 2, "last": 118}
    for z, name in enumerate(names):
        np.testing.assert_array_equal(stack.data[z].compute(), pixels[name])


def test_gap_in_step_2_series(tmp_path):
    write_tifs(tmp_path, [f"rec_{n:04d}.tif" for n in (0, 2, 4, 8, 10)])
    stack = opened(tmp_path)
    assert stack.shape[0] == 6 and stack.missing == [3]
    assert not stack.read_slice(3).any() and stack.read_slice(4).any()


def test_spaces_unicode_and_case_insensitive_extensions(tmp_path):
    names = ["Slice 1.PNG", "Slice 2.png", "Slice 3.Png"]
    tmp_path.mkdir(exist_ok=True)
    folder = tmp_path / "données µCT"
    folder.mkdir()
    arrays = []
    for i, name in enumerate(names):
        arr = np.full((4, 3), 10 * (i + 1), np.uint8)
        Image.fromarray(arr).save(folder / name)
        arrays.append(arr)
    stack = opened(folder)
    assert [f.name for f in stack.files] == names
    assert stack.pattern == "Slice *.png" and stack.name == "Slice"
    np.testing.assert_array_equal(stack.data.compute(), np.stack(arrays))


def test_duplicate_numbers_are_an_error_naming_both(tmp_path):
    write_tifs(tmp_path, ["s_1.tif", "s_01.tif", "s_2.tif"])
    with pytest.raises(DuplicateSliceNumber) as info:
        opened(tmp_path)
    assert "s_1.tif" in str(info.value) and "s_01.tif" in str(info.value)


def test_largest_series_wins_and_others_are_announced(tmp_path):
    write_tifs(tmp_path, [f"big_{i:03d}.tif" for i in range(5)])
    write_tifs(tmp_path, [f"small_{i:03d}.tif" for i in range(3)])
    with pytest.warns(UserWarning, match=r"small_\*\.tif"):
        stack = open_stack(tmp_path)
    assert stack.pattern == "big_*.tif" and stack.shape[0] == 5
    assert [(s.pattern, s.count, s.prefix, s.extension) for s in stack.other_series] == [
        ("small_*.tif", 3, "small_", ".tif")
    ]
    assert any("small_*.tif" in w for w in stack.warnings)
    other = opened(tmp_path, pattern="small_*.tif")
    assert other.shape[0] == 3 and other.other_series == []


def test_tie_goes_to_higher_bit_depth(tmp_path):
    write_tifs(tmp_path, [f"a_{i}.tif" for i in range(3)], dtype="uint8")
    write_tifs(tmp_path, [f"b_{i}.tif" for i in range(3)], dtype="uint16")
    stack = opened(tmp_path)
    assert stack.pattern == "b_*.tif" and stack.dtype == np.uint16


def test_tie_then_goes_to_larger_slices(tmp_path):
    write_tifs(tmp_path, [f"a_{i}.tif" for i in range(3)], shape=(4, 4))
    write_tifs(tmp_path, [f"b_{i}.tif" for i in range(3)], shape=(8, 8))
    assert opened(tmp_path).shape == (3, 8, 8)


def test_tie_then_goes_to_prefix_in_alphabetical_order(tmp_path):
    write_tifs(tmp_path, [f"zeta_{i}.tif" for i in range(3)])
    write_tifs(tmp_path, [f"alpha_{i}.tif" for i in range(3)])
    assert opened(tmp_path).pattern == "alpha_*.tif"


def test_previews_logs_hidden_and_cache_are_ignored(tmp_path):
    write_tifs(tmp_path, [f"scan_rec{i:08d}.tif" for i in range(3)])
    # things that must not become series, even when they look like images
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "scan_spr.bmp")
    (tmp_path / "scan_rec.log").write_text("[System]\nScanner=SkyScan1172\n")
    (tmp_path / "notes.txt").write_text("hello")
    write_tifs(tmp_path / ".ctstack", [f"c_{i}.tif" for i in range(9)])
    write_tifs(tmp_path, [f".hidden_{i}.tif" for i in range(9)])
    stack = opened(tmp_path)
    assert stack.pattern == "scan_rec*.tif" and stack.shape[0] == 3
    assert stack.other_series == []


def test_one_slice_file_opens_its_series(tmp_path):
    pixels = write_tifs(tmp_path, [f"s_{i:02d}.tif" for i in range(4)])
    write_tifs(tmp_path, [f"other_{i:02d}.tif" for i in range(9)])
    stack = opened(tmp_path / "s_02.tif")
    assert stack.pattern == "s_*.tif" and stack.shape[0] == 4
    assert stack.root == tmp_path
    np.testing.assert_array_equal(stack.read_slice(2), pixels["s_02.tif"])


def test_pattern_matching_nothing_is_an_error(tmp_path):
    write_tifs(tmp_path, ["s_0.tif", "s_1.tif"])
    with pytest.raises(NoSliceSeries, match=r"rec_\*\.bmp"):
        open_stack(tmp_path, pattern="rec_*.bmp")


def test_symlinked_slices_are_followed(tmp_path):
    real = tmp_path / "real"
    pixels = write_tifs(real, ["a_0.tif", "a_1.tif"])
    linked = tmp_path / "linked"
    linked.mkdir()
    for name in pixels:
        (linked / name).symlink_to(real / name)
    (linked / "a_2.tif").symlink_to(linked / "a_2.tif")  # a loop: ignored, not fatal
    stack = opened(linked)
    assert stack.shape == (2, 6, 5)
    np.testing.assert_array_equal(stack.read_slice(1), pixels["a_1.tif"])


def test_choose_series_takes_the_pick_else_the_largest_else_the_tie_rules(tmp_path):
    from ctstack.discovery import PickDicom, PickRaster, SeriesInfo, choose_series, group_raster

    write_tifs(tmp_path, ["a_0.tif", "a_1.tif", "b_0.tif", "b_1.tif", "c_0.tif"])
    series = group_raster(sorted(tmp_path.glob("*.tif")))
    by_prefix = {s.prefix: s for s in series}
    assert choose_series(series).prefix == "a_"  # a_ and b_ hold two files: prefix A-Z
    picked = choose_series(series, PickRaster(("c_", "", ".tif"), tmp_path / "c_0.tif"))
    assert picked is by_prefix["c_"]
    assert choose_series(series, PickDicom("1.2.3")).prefix == "a_"  # no such series: rules
    dicom = SeriesInfo(
        "x", "", "", "1.2.3", [tmp_path / "a_0.tif"], [None], kind="dicom", series_uid="1.2.3"
    )
    assert choose_series([*series, dicom], PickDicom("1.2.3")) is dicom
