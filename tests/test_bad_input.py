"""Bad input: never a crash; either a clear CTStackError naming the file, or a listed bad slice."""

from __future__ import annotations

import builtins
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import ctstack.io.raster as raster
from ctstack import open_stack
from ctstack.errors import (
    AccessDenied,
    AllSlicesUnreadable,
    CTStackError,
    ImageTooLarge,
    InconsistentSlices,
    NoSliceSeries,
    PathNotFound,
    UnsupportedFormat,
)


def series(folder: Path, n=5, shape=(6, 5), dtype="uint16") -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = []
    for i in range(n):
        a = np.full(shape, i + 1, dtype)
        tifffile.imwrite(folder / f"s_{i:03d}.tif", a)
        arrays.append(a)
    return arrays


def quiet_open(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_stack(path, **kw)


def huge_tiff(path: Path, width=200_000, height=200_000) -> None:
    """A classic TIFF whose header claims width x height 8-bit pixels but holds 16 bytes."""
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8),
        (277, 3, 1, 1),
        (279, 4, 1, 16),
    ]
    header_tiff(path, entries, payload=16)


def header_tiff(path: Path, entries: list[tuple[int, int, int, int]], payload: int) -> None:
    """A little-endian classic TIFF: 8-byte header, ``payload`` zero bytes (strip data starts
    at offset 8), then one IFD of ``(tag, type, count, value)`` entries."""
    ifd = struct.pack("<H", len(entries))
    for code, typ, count, value in entries:
        ifd += struct.pack("<HHII", code, typ, count, value)
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8 + payload) + bytes(payload) + ifd)


def test_missing_path(tmp_path):
    with pytest.raises(PathNotFound, match="no such file"):
        open_stack(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(NoSliceSeries, match=str(tmp_path)):
        open_stack(tmp_path)


def test_folder_without_image_series(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    (tmp_path / "scan.log").write_text("[System]")
    with pytest.raises(NoSliceSeries):
        open_stack(tmp_path)


def test_zero_byte_slice_is_a_bad_slice(tmp_path):
    arrays = series(tmp_path)
    (tmp_path / "s_002.tif").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"s_002\.tif"):
        stack = open_stack(tmp_path)
    assert [(b.z, b.path.name) for b in stack.bad_slices] == [(2, "s_002.tif")]
    assert "empty" in stack.bad_slices[0].reason
    volume = stack.data.compute()
    assert not volume[2].any()
    np.testing.assert_array_equal(volume[3], arrays[3])


def test_truncated_tiff_is_a_bad_slice_at_open(tmp_path):
    series(tmp_path)
    data = (tmp_path / "s_001.tif").read_bytes()
    (tmp_path / "s_001.tif").write_bytes(data[: len(data) - 20])
    stack = quiet_open(tmp_path)
    assert [b.z for b in stack.bad_slices] == [1]
    assert "truncated" in stack.bad_slices[0].reason


def test_corrupt_png_found_when_read_goes_on_with_zeros(tmp_path):
    good = np.arange(30, dtype=np.uint8).reshape(6, 5)
    for i in range(3):
        Image.fromarray(good).save(tmp_path / f"p_{i}.png")
    path = tmp_path / "p_1.png"
    data = bytearray(path.read_bytes())
    # keep the header, break the compressed pixel data inside IDAT
    start = data.index(b"IDAT") + 4
    data[start : start + 8] = b"\x00garbage"
    path.write_bytes(bytes(data))
    stack = quiet_open(tmp_path)
    assert stack.bad_slices == []  # the header was fine
    with pytest.warns(UserWarning, match=r"p_1\.png"):
        volume = stack.data.compute()
    assert not volume[1].any()
    np.testing.assert_array_equal(volume[2], good)
    assert [(b.z, b.path) for b in stack.bad_slices] == [(1, path)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        stack.read_slice(1)
    assert len(stack.bad_slices) == 1


def test_raw_bytes_named_tif(tmp_path):
    path = tmp_path / "raw.tif"
    path.write_bytes(os.urandom(1000).replace(b"II", b"ab").replace(b"MM", b"ab"))
    with pytest.raises(UnsupportedFormat, match=r"raw\.tif"):
        open_stack(path)
    arrays = series(tmp_path / "mix")
    (tmp_path / "mix" / "s_004.tif").write_bytes(b"\x00" * 500)
    stack = quiet_open(tmp_path / "mix")
    assert [b.z for b in stack.bad_slices] == [4]
    np.testing.assert_array_equal(stack.read_slice(0), arrays[0])


def test_every_file_undecodable_is_an_error(tmp_path):
    for i in range(4):
        (tmp_path / f"s_{i}.tif").write_bytes(b"not a tiff at all " * 10)
    with pytest.raises(AllSlicesUnreadable, match=r"s_0\.tif"):
        open_stack(tmp_path)


def test_enormous_dimensions_refused_before_allocating(tmp_path):
    huge_tiff(tmp_path / "huge.tif")
    with pytest.raises(ImageTooLarge, match=r"huge\.tif"):
        open_stack(tmp_path / "huge.tif")
    # a PNG whose IHDR claims 100000 x 100000
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    with pytest.raises(ImageTooLarge, match=r"huge\.png"):
        open_stack(tmp_path / "huge.png")
    # inside a series it is one bad slice
    series(tmp_path / "s")
    huge_tiff(tmp_path / "s" / "s_005.tif")
    stack = quiet_open(tmp_path / "s")
    assert stack.shape == (6, 6, 5) and [b.z for b in stack.bad_slices] == [5]


def test_odd_shaped_slice_is_a_bad_slice(tmp_path):
    series(tmp_path)
    tifffile.imwrite(tmp_path / "s_003.tif", np.ones((9, 9), np.uint16))
    with pytest.warns(UserWarning, match=r"s_003\.tif"):
        stack = open_stack(tmp_path)
    assert stack.shape == (5, 6, 5)
    assert [b.z for b in stack.bad_slices] == [3] and "9 x 9" in stack.bad_slices[0].reason
    assert not stack.read_slice(3).any()


def test_no_majority_shape_is_refused(tmp_path):
    series(tmp_path, n=2, shape=(6, 5))
    for i in (2, 3):
        tifffile.imwrite(tmp_path / f"s_{i:03d}.tif", np.ones((8, 8), np.uint16))
    with pytest.raises(InconsistentSlices) as info:
        open_stack(tmp_path)
    msg = str(info.value)
    assert "5 x 6" in msg and "8 x 8" in msg and "s_00" in msg


def test_unreadable_file_injected_oserror(tmp_path, monkeypatch):
    # root ignores chmod, so simulate the OS refusing to read one slice
    arrays = series(tmp_path)
    target = tmp_path / "s_001.tif"
    real_sniff = raster.sniff

    def refusing(path):
        if Path(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return real_sniff(path)

    monkeypatch.setattr(raster, "sniff", refusing)
    stack = quiet_open(tmp_path)
    assert [b.z for b in stack.bad_slices] == [1]
    assert "permission denied" in stack.bad_slices[0].reason
    np.testing.assert_array_equal(stack.read_slice(2), arrays[2])


def test_unlistable_folder_injected_oserror(tmp_path, monkeypatch):
    series(tmp_path)
    import ctstack.discovery as discovery

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(discovery.os, "scandir", refuse)
    with pytest.raises(AccessDenied, match="permission denied"):
        open_stack(tmp_path)


def test_read_only_folder_opens_and_reads_without_writing(tmp_path, monkeypatch):
    arrays = series(tmp_path)
    real_open = builtins.open
    real_os_open = os.open

    def guarded_open(file, mode="r", *args, **kw):
        if any(c in mode for c in "wax+") and str(file).startswith(str(tmp_path)):
            raise PermissionError(30, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kw)

    def guarded_os_open(path, flags, *args, **kw):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and str(path).startswith(str(tmp_path)):
            raise PermissionError(30, "Read-only file system", str(path))
        return real_os_open(path, flags, *args, **kw)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
    before = sorted(os.listdir(tmp_path))
    stack = quiet_open(tmp_path)
    np.testing.assert_array_equal(stack.data.compute(), np.stack(arrays))
    assert sorted(os.listdir(tmp_path)) == before


def test_symlink_loop_and_broken_link_as_the_path(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(PathNotFound, match="loop"):
        open_stack(loop)
    broken = tmp_path / "broken.tif"
    broken.symlink_to(tmp_path / "gone.tif")
    with pytest.raises(PathNotFound, match="broken symbolic link"):
        open_stack(broken)


def test_every_error_is_a_ctstack_error_with_the_path(tmp_path):
    for make in (lambda p: None, lambda p: p.mkdir()):
        target = tmp_path / "x"
        make(target)
        with pytest.raises(CTStackError) as info:
            open_stack(target)
        assert str(target) in str(info.value)
