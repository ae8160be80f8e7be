"""Fixtures for the napari plugin tests: small data copies, a build gate, notification capture."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

MAX_SIZE = 64  # small, so the real scans get two or three levels


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Give napari's viewer fixture a call report when setup ends the test early.

    ``make_napari_viewer`` reads ``item.rep_call`` in its teardown; a test skipped (or failed)
    in setup, e.g. by a real-data fixture in a plain clone, has none and the teardown errors.
    """
    report = yield
    if report.when == "setup" and not report.passed and not hasattr(item, "rep_call"):
        item.rep_call = report
    return report


@pytest.fixture(autouse=True)
def _small_pyramids(monkeypatch, tmp_path_factory) -> None:
    """Small pyramids for every test, and no sample data written to the user's cache."""
    monkeypatch.setenv("CTSTACK_MAX_SIZE", str(MAX_SIZE))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    monkeypatch.delenv("CTSTACK_CACHE_DIR", raising=False)


@pytest.fixture
def scan_copy(real_scan_dir, tmp_path) -> tuple[Path, dict]:
    """A writable copy of one real scan (its pyramid cache lands in tmp, not in ../shared)."""
    folder, facts = real_scan_dir
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    return copy, facts


@pytest.fixture
def phantom_dir(tmp_path) -> Path:
    """A 48 x 96 x 96 uint16 phantom slice folder with a 10 µm SkyScan-style log."""
    from ctstack.sample import write_phantom_stack

    folder = tmp_path / "phantom"
    write_phantom_stack(folder, (48, 96, 96), "uint16", voxel_size_um=10.0)
    return folder


class Gate:
    """Holds pyramid builds after `allow` slices until `open()`; display reads pass freely."""

    def __init__(self, allow: int = 8) -> None:
        self.allow = allow
        self.event = threading.Event()
        self.reached = threading.Event()
        self.reads = 0

    def open(self) -> None:
        self.event.set()


@pytest.fixture
def gate(monkeypatch):
    """Deterministic mid-build hook: the builder's reads (into a buffer) wait on the gate."""
    from ctstack.stack import Stack

    g = Gate()
    original = Stack.read_slice

    def read_slice(self, z, out=None):
        if out is not None:  # the pyramid builder reads into reused buffers; napari does not
            g.reads += 1
            if g.reads > g.allow:
                g.reached.set()
                assert g.event.wait(30), "gate never opened"
        return original(self, z, out)

    monkeypatch.setattr(Stack, "read_slice", read_slice)
    yield g
    g.open()


@pytest.fixture
def notes():
    """A function returning the napari notifications shown since the test started."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)

    def shown(severity: str | None = None) -> list:
        out = notification_manager.records[start:]
        return [n for n in out if severity is None or str(n.severity).lower() == severity]

    return shown


def rendered_on_grid(viewer, shot: np.ndarray, shape_yx, scale_yx) -> np.ndarray:
    """Sample a canvas screenshot at the screen position of every (y, x) data pixel centre.

    Uses the camera (centre, zoom) to map world to screen, so the result lines up with the data
    wherever napari put the image; pixels off screen come back as NaN.
    """
    grey = shot[..., :3].astype(float).mean(axis=2)
    h, w = grey.shape
    cy, cx = viewer.scene.camera.center[-2:]
    zoom = viewer.scene.camera.zoom
    ys = np.arange(shape_yx[0]) * scale_yx[0]
    xs = np.arange(shape_yx[1]) * scale_yx[1]
    rows = np.round(h / 2 + (ys - cy) * zoom - 0.5).astype(int)
    cols = np.round(w / 2 + (xs - cx) * zoom - 0.5).astype(int)
    out = np.full((len(rows), len(cols)), np.nan)
    ok_r, ok_c = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    out[np.ix_(ok_r, ok_c)] = grey[np.ix_(rows[ok_r], cols[ok_c])]
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images over the pixels where both are finite."""
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    return float(np.corrcoef(a, b)[0, 1])
