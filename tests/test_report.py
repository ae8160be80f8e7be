"""What a stack has to say reaches its reporter: one summary at open, then each bad slice."""

from __future__ import annotations

import warnings

import numpy as np
import tifffile

import ctstack
from ctstack.stack import SUMMARY_LINES


def _stack_with_empty_files(folder, n_empty: int):
    folder.mkdir()
    for z in range(20):
        path = folder / f"slice_{z:04d}.tif"
        if z < n_empty:
            path.write_bytes(b"")  # zero bytes: a note each, read as zeros
        else:
            tifffile.imwrite(path, np.full((8, 8), z, np.uint16))
    return folder


def test_default_is_one_warning_summary_per_stack(tmp_path):
    folder = _stack_with_empty_files(tmp_path / "s", 14)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack = ctstack.open_stack(folder)
    ours = [w for w in caught if issubclass(w.category, UserWarning)]
    assert len(ours) == 1
    text = str(ours[0].message)
    assert text.startswith(f"{len(stack.warnings)} notes") and "more (see stack.warnings)" in text
    assert len(text.splitlines()) == SUMMARY_LINES + 2
    assert len(stack.warnings) >= 14  # every note is kept on the stack


def test_a_face_passes_its_reporter_and_no_warning_is_raised(tmp_path):
    folder = _stack_with_empty_files(tmp_path / "s", 2)
    heard: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any UserWarning would fail the test
        stack = ctstack.open_stack(folder, report=heard.append)
        stack.read_slice(5)
    assert len(heard) == 1 and "slice_0000.tif" in heard[0] and "slice_0001.tif" in heard[0]
