"""Hardening (issue 13): readers and headers under hostile input."""

from __future__ import annotations

import math
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

import ctstack
from ctstack import open_stack
from ctstack.errors import CTStackError, ImageTooLarge, UnreadableSlice
from tests.test_bad_input import header_tiff


def quiet_open(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_stack(path, **kw)


def plane(i: int) -> np.ndarray:
    return (np.arange(64 * 48).reshape(64, 48) + i).astype(np.uint16)


def smash_page(path: Path, page: int) -> None:
    """Overwrite every strip of one page with bytes no zlib stream starts with."""
    with tifffile.TiffFile(path) as tif:
        p = tif.pages[page]
        spans = list(zip(p.dataoffsets, p.databytecounts, strict=True))
    data = bytearray(path.read_bytes())
    for offset, count in spans:
        data[offset : offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))


def compressed_series(folder: Path, n: int = 8) -> None:
    folder.mkdir()
    for i in range(n):
        tifffile.imwrite(folder / f"s_{i:03d}.tif", plane(i), compression="zlib", rowsperstrip=16)


def compressed_multipage(path: Path, n: int = 8) -> None:
    tifffile.imwrite(
        path,
        np.stack([plane(i) for i in range(n)]),
        compression="zlib",
        rowsperstrip=16,
        metadata={"axes": "ZYX"},
    )


@pytest.mark.parametrize("kind", ["series", "multipage"])
def test_corrupt_compressed_slice_reads_as_zeros_in_the_pyramid_build(tmp_path, kind):
    if kind == "series":
        compressed_series(tmp_path / "s")
        smash_page(tmp_path / "s" / "s_003.tif", 0)
        path = tmp_path / "s"
    else:
        path = tmp_path / "m.tif"
        compressed_multipage(path)
        smash_page(path, 3)
    stack = quiet_open(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        levels = stack.build_pyramid(max_size=16, cache_dir=tmp_path / "cache")
    assert [b.z for b in stack.bad_slices] == [3]
    expected = np.stack([plane(i) if i != 3 else np.zeros_like(plane(0)) for i in range(8)])
    np.testing.assert_array_equal(levels[0].compute(), expected)
    # level 1 is the 2x2x2 mean of that volume
    assert levels[1].shape == (4, 32, 24)
    block = expected[2:4, :2, :2].astype(np.int64)
    assert int(levels[1][1, 0, 0].compute()) == (block.sum() + 4) // 8
    # export of a pyramid level reads the same slices
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctstack.export(stack, tmp_path / "out", level=1, format="tiff-stack")
    # a reused buffer keeps its shape whatever the decoder did to it
    buf = np.empty((64, 48), np.uint16)
    stack.read_slice(3, out=buf)
    assert buf.shape == (64, 48) and not buf.any()


def small_series(folder: Path, n: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tifffile.imwrite(folder / f"s_{i:03d}.tif", np.full((6, 5), i + 1, np.uint16))


def run_with_timeout(fn, seconds: float = 10.0):
    """Run fn in a daemon thread; fail (instead of hanging the suite) when it blocks."""
    import threading

    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the test
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for more than {seconds} s"
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result.get("value")


def test_info_on_a_named_pipe_is_a_clean_error_not_a_hang(tmp_path, capsys):
    import os

    from ctstack.cli import main

    fifo = tmp_path / "slice_0001.tif"
    os.mkfifo(fifo)
    assert run_with_timeout(lambda: main(["info", str(fifo)])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "slice_0001.tif" in err[0] and "named pipe" in err[0]
    with pytest.raises(CTStackError, match="named pipe"):
        run_with_timeout(lambda: open_stack(fifo))
    if os.path.exists("/dev/zero"):  # a device is never read either (it never ends)
        with pytest.raises(CTStackError, match="device"):
            run_with_timeout(lambda: open_stack("/dev/zero"))


def test_non_files_named_like_slices_are_named_in_a_warning(tmp_path):
    import os

    small_series(tmp_path)
    for i, make in (
        (5, lambda p: (p.unlink(), p.mkdir())),
        (6, lambda p: (p.unlink(), p.symlink_to(tmp_path / "nowhere.tif"))),
        (7, lambda p: (p.unlink(), p.symlink_to(p))),
    ):
        make(tmp_path / f"s_{i:03d}.tif")
    os.mkfifo(tmp_path / "s_008.tif")
    tifffile.imwrite(tmp_path / "s_009.tif", np.full((6, 5), 10, np.uint16))
    stack = run_with_timeout(lambda: quiet_open(tmp_path))
    assert stack.shape == (10, 6, 5) and stack.missing == [5, 6, 7, 8]
    said = "\n".join(stack.warnings)
    assert "s_005.tif: named like a slice but is a folder" in said
    assert "s_006.tif: named like a slice but is a broken symbolic link" in said
    assert "s_007.tif: named like a slice but is a symbolic link loop" in said
    assert "s_008.tif: named like a slice but is a named pipe" in said


def test_a_multipage_tiff_among_single_page_slices_is_announced(tmp_path):
    small_series(tmp_path)
    tifffile.imwrite(
        tmp_path / "s_003.tif",
        np.full((5, 6, 5), 9, np.uint16),
        metadata={"axes": "ZYX"},
    )
    stack = quiet_open(tmp_path)
    assert any("s_003.tif" in w and "first page" in w for w in stack.warnings)
    assert int(stack.read_slice(3).max()) == 9


def test_a_stray_file_numbered_like_a_date_is_its_own_series(tmp_path):
    small_series(tmp_path, 16)
    tifffile.imwrite(tmp_path / "s_20240315.tif", np.full((6, 5), 99, np.uint16))
    stack = quiet_open(tmp_path)
    assert stack.shape == (16, 6, 5) and stack.missing == []
    assert [s.count for s in stack.other_series] == [1]
    stray = stack.other_series[0]
    assert any("s_20240315.tif" in w for w in stack.warnings)
    assert any("split into" in w for w in stack.warnings)
    again = quiet_open(tmp_path, pattern=stack.pattern)
    assert again.shape == (16, 6, 5)
    alone = quiet_open(tmp_path, pattern=stray.pattern)
    assert alone.shape == (1, 6, 5) and int(alone.read_slice(0).max()) == 99
    assert quiet_open(tmp_path, pattern=alone.pattern).shape == (1, 6, 5)


def test_split_rule_keeps_sparse_but_regular_series_whole(tmp_path):
    from ctstack.discovery import split_gap

    assert split_gap([0, 1, 2, 20240315]) == 100
    assert split_gap(list(range(0, 2000, 10))) == 1000
    # two groups 150 apart with step 1: split; a gap of 50 with step 1 (count 8): kept
    for i in (*range(4), *range(154, 158)):
        tifffile.imwrite(tmp_path / f"a_{i:04d}.tif", np.full((6, 5), i, np.uint16))
    for i in (*range(4), *range(54, 58)):
        tifffile.imwrite(tmp_path / f"b_{i:04d}.tif", np.full((6, 5), i, np.uint16))
    opened = quiet_open(tmp_path, pattern="b_*.tif")
    assert opened.shape == (58, 6, 5)
    parts = quiet_open(tmp_path, pattern="a_*.tif")
    assert parts.shape == (4, 6, 5) and [s.count for s in parts.other_series] == [4]
    other = quiet_open(tmp_path, pattern=parts.other_series[0].pattern)
    assert other.shape == (4, 6, 5) and int(other.read_slice(0).max()) == 154


def claiming_tiff(path: Path, width: int, height: int, compression: int = 1) -> None:
    """A 16-bit TIFF whose one strip lies inside the file but cannot hold its claimed image."""
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 16),
        (259, 3, 1, compression),
        (262, 3, 1, 1),
        (273, 4, 1, 8),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, 160),
    ]
    header_tiff(path, entries, payload=160)


def test_a_288_byte_tiff_claiming_46000_squared_is_refused_at_open(tmp_path):
    claiming_tiff(tmp_path / "big.tif", 46000, 46000)
    assert (tmp_path / "big.tif").stat().st_size <= 288
    with pytest.raises(UnreadableSlice, match=r"big\.tif.*(cover|hold)"):
        open_stack(tmp_path / "big.tif")
    # in a series: one bad slice, found at open
    small_series(tmp_path / "s", 4)
    claiming_tiff(tmp_path / "s" / "s_004.tif", 46000, 46000)
    stack = quiet_open(tmp_path / "s")
    assert stack.shape == (5, 6, 5) and [b.z for b in stack.bad_slices] == [4]
    # compressed: the strips must at least cover the rows
    claiming_tiff(tmp_path / "z.tif", 46000, 46000, compression=8)
    with open(tmp_path / "z.tif", "r+b") as fh:  # RowsPerStrip 16: 2875 strips needed
        data = bytearray(fh.read())
        at = data.index(struct.pack("<HHI", 278, 4, 1)) + 8
        data[at : at + 4] = struct.pack("<I", 16)
        fh.seek(0)
        fh.write(data)
    with pytest.raises(UnreadableSlice, match=r"z\.tif.*strips do not cover"):
        open_stack(tmp_path / "z.tif")


def test_one_plane_is_bounded_and_the_message_names_the_bound_and_the_variable(
    tmp_path, monkeypatch
):
    import ctstack.io.raster as raster

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((100, 100), np.uint16))
    monkeypatch.setattr(raster, "physical_memory", lambda: 8 * 10_000)
    monkeypatch.delenv("CTSTACK_MAX_SLICE_BYTES", raising=False)
    with pytest.raises(ImageTooLarge, match=r"a\.tif") as info:
        open_stack(tmp_path / "a.tif")
    assert "RAM/8" in str(info.value) and "CTSTACK_MAX_SLICE_BYTES" in str(info.value)
    monkeypatch.setenv("CTSTACK_MAX_SLICE_BYTES", "20000")
    assert quiet_open(tmp_path / "a.tif").shape == (1, 100, 100)
    monkeypatch.setenv("CTSTACK_MAX_SLICE_BYTES", "19999")
    with pytest.raises(ImageTooLarge, match="CTSTACK_MAX_SLICE_BYTES"):
        open_stack(tmp_path / "a.tif")
    # the same bound for a multi-page TIFF and DICOM-free paths alike
    tifffile.imwrite(
        tmp_path / "m.tif", np.zeros((5, 100, 100), np.uint16), metadata={"axes": "ZYX"}
    )
    with pytest.raises(ImageTooLarge, match=r"m\.tif"):
        open_stack(tmp_path / "m.tif")


def test_read_ahead_is_bounded_in_bytes():
    from ctstack._readahead import ReadAhead, ahead_within

    gib = 2**30
    assert ahead_within(4, int(3.9 * gib), budget=4 * gib) == 1
    assert ahead_within(4, gib, budget=4 * gib) == 4
    assert ahead_within(4, 10 * gib, budget=4 * gib) == 1  # always one
    assert ahead_within(4, 0) == 4
    pool: ReadAhead[int, int] = ReadAhead(
        lambda i: i, threads=2, ahead=4, name="t", item_bytes=3 * gib, max_bytes=4 * gib
    )
    assert pool.ahead == 1
    with pool:
        assert list(pool.map(range(5))) == list(range(5))


def gray_ramp(bits: int = 8) -> np.ndarray:
    ramp = np.linspace(0, 65535, 1 << bits).astype(np.uint16)
    return np.stack([ramp, ramp, ramp])


def test_a_gray_ramp_palette_tiff_reads_its_stored_indices(tmp_path):
    idx = np.arange(30, dtype=np.uint8).reshape(6, 5) * 8
    for i in range(3):
        tifffile.imwrite(
            tmp_path / f"p_{i}.tif", idx + i, photometric="palette", colormap=gray_ramp()
        )
    stack = quiet_open(tmp_path)
    assert stack.dtype == np.uint8
    np.testing.assert_array_equal(stack.read_slice(1), idx + 1)
    assert not any("luminance" in w for w in stack.warnings)
    with tifffile.TiffFile(tmp_path / "p_1.tif") as tif:  # what tifffile reads
        np.testing.assert_array_equal(stack.read_slice(1), tif.asarray())


def test_grayscale_wins_a_tie_over_colour_and_bits_count_stored_bits(tmp_path):
    idx = np.arange(30, dtype=np.uint8).reshape(6, 5)
    colour_map = gray_ramp()
    colour_map[0] = colour_map[0][::-1]  # a colour palette
    for i in range(3):
        tifffile.imwrite(tmp_path / f"a_{i}.tif", idx, photometric="palette", colormap=colour_map)
        tifffile.imwrite(tmp_path / f"b_{i}.tif", idx + i)  # 8-bit grayscale
    stack = quiet_open(tmp_path)
    assert stack.pattern == "b_*.tif" and stack.dtype == np.uint8
    # a gray-ramp palette (8 stored bits) against 16-bit grayscale: the 16 bits win
    for i in range(3):
        tifffile.imwrite(tmp_path / f"c_{i}.tif", idx, photometric="palette", colormap=gray_ramp())
        tifffile.imwrite(tmp_path / f"d_{i}.tif", idx.astype(np.uint16))
    opened = quiet_open(tmp_path, pattern="[cd]_*.tif")
    assert opened.pattern == "d_*.tif"
    # an RGB series against 8-bit grayscale: grayscale, whatever the names
    for i in range(3):
        tifffile.imwrite(tmp_path / f"e_{i}.tif", np.zeros((6, 5, 3), np.uint16))
        tifffile.imwrite(tmp_path / f"f_{i}.tif", idx)
    assert quiet_open(tmp_path, pattern="[ef]_*.tif").pattern == "f_*.tif"


def test_an_unusable_voxel_size_from_any_source_becomes_one_pixel(tmp_path, monkeypatch):
    import ctstack.metadata as metadata

    small_series(tmp_path, 3)
    monkeypatch.setattr(
        metadata,
        "tiff_voxel",
        lambda path: metadata.VoxelInfo((0.0, math.nan, 1.0), "millimeter", "a bad tag"),
    )
    stack = quiet_open(tmp_path)
    assert stack.voxel_size == (1.0, 1.0, 1.0) and stack.unit == "pixel"
    assert any("not a positive finite size" in w for w in stack.warnings)
