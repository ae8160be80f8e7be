"""napari plugin responsiveness on the benchmark stack: first frame, slice stepping, xz-plane,
and the longest event-loop stall while the pyramid builds in the background.

``run(quick)`` returns a markdown section (``python benchmarks/run.py napari``); it needs a
display and starts a virtual one when there is none. The cache goes to a private temporary
folder, so "without a cache" really builds and other benchmarks' caches are left alone.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

PLUGIN = "napari-ctstack"
STEPS = 40  # slice steps timed per view


class StallMeter:
    """Measures the longest gap between ticks of a 5 ms timer: the event loop's longest stall."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.longest = 0.0
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.longest = max(self.longest, now - self._last)
        self._last = now

    def start(self) -> None:
        self.longest, self._last = 0.0, time.perf_counter()
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return self.longest


def _drawn(viewer):
    """A function that lets pending events run, then renders the canvas synchronously."""
    from qtpy.QtWidgets import QApplication

    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    app = QApplication.instance()

    def wait() -> None:
        app.processEvents()
        canvas.native.repaint()  # paintGL now: the frame is on screen when this returns
        app.processEvents()

    return wait


def _first_frame(folder: Path) -> tuple[float, object]:
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1200, 900)
    wait = _drawn(viewer)
    wait()
    t0 = time.perf_counter()
    viewer.open(str(folder), plugin=PLUGIN)
    wait()
    return time.perf_counter() - t0, viewer


def _step_times(viewer, wait, zs) -> list[float]:
    times = []
    for z in zs:
        t0 = time.perf_counter()
        viewer.dims.set_current_step(0, int(z))
        wait()
        times.append(time.perf_counter() - t0)
    return times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _session(folder: Path, max_size: int) -> list[list[object]]:
    from ctstack.napari._qt.build import controller_for
    from ctstack.stack import open_stack

    stack = open_stack(folder)
    _harness.warm(stack.files)
    rows: list[list[object]] = []

    # 1. no cache: first frame, then the background build with the stall meter running
    t_first, viewer = _first_frame(folder)
    meter = StallMeter()
    meter.start()
    t0 = time.perf_counter()
    ctl = controller_for(viewer)
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    while time.perf_counter() - t0 < 0.3 or ctl.busy:
        app.processEvents()
        time.sleep(0.002)
    build_s = time.perf_counter() - t0
    stall = meter.stop()
    layer = viewer.layers[stack.name]
    rows.append(["viewer.open -> first frame, no cache", _harness.fmt_s(t_first), "goal < 1 s"])
    rows.append(
        [
            "background pyramid build (GUI running)",
            _harness.fmt_s(build_s),
            f"{len(layer.level_shapes)} levels",
        ]
    )
    rows.append(
        ["longest event-loop stall during the build", f"{stall * 1000:.0f} ms", "goal < 100 ms"]
    )
    viewer.close()

    # 2. with the cache: first frame of the multiscale layer
    t_cached, viewer = _first_frame(folder)
    rows.append(["viewer.open -> first frame, cache hit", _harness.fmt_s(t_cached), ""])
    wait = _drawn(viewer)
    layer = viewer.layers[stack.name]
    nz = stack.shape[0]
    zs = [nz // 4 + i for i in range(STEPS)]

    # 3. stepping through z, zoomed out (napari picks a coarse level) and at full resolution
    viewer.reset_view()
    wait()
    _step_times(viewer, wait, zs[:3])
    out = _step_times(viewer, wait, zs)
    level_out = layer.data_level
    viewer.scene.camera.zoom *= 2 ** len(layer.level_shapes)  # level 0 on screen
    wait()
    _step_times(viewer, wait, zs[:3])
    full = _step_times(viewer, wait, zs)
    level_full = layer.data_level
    for label, times, level in (
        ("zoomed out", out, level_out),
        ("full resolution", full, level_full),
    ):
        rows.append(
            [
                f"z step, {label} (level {level})",
                f"median {statistics.median(times) * 1000:.1f} ms, "
                f"p95 {_pct(times, 0.95) * 1000:.1f} ms",
                "goal p95 < 50 ms",
            ]
        )

    # 4. the xz-plane (napari's transposed view): coarse level, then level 0 (every file decoded)
    viewer.reset_view()
    wait()
    t0 = time.perf_counter()
    viewer.dims.order = (1, 0, 2)
    viewer.reset_view()
    wait()
    rows.append(
        [
            f"xz-plane, zoomed out (level {layer.data_level})",
            _harness.fmt_s(time.perf_counter() - t0),
            "",
        ]
    )
    layer.locked_data_level = 0
    t0 = time.perf_counter()
    viewer.dims.set_current_step(1, stack.shape[1] // 2 + 1)
    wait()
    rows.append(
        [
            "xz-plane, level 0 (decodes all files)",
            _harness.fmt_s(time.perf_counter() - t0),
            f"{nz} files",
        ]
    )
    viewer.close()
    return rows


def run(quick: bool) -> str:
    from ctstack.napari._session import virtual_display

    folder = _harness.benchmark_stack(quick)
    max_size = 128 if quick else 512
    with tempfile.TemporaryDirectory(prefix="ctstack-bench-napari-") as cache:
        os.environ["CTSTACK_CACHE_DIR"] = cache
        os.environ["CTSTACK_MAX_SIZE"] = str(max_size)
        try:
            with virtual_display():
                rows = _session(folder, max_size)
        finally:
            os.environ.pop("CTSTACK_CACHE_DIR", None)
    from ctstack.stack import open_stack

    shape = " x ".join(map(str, open_stack(folder).shape))
    return (
        f"### napari plugin ({shape} uint16, max_size {max_size})\n\n"
        + _harness.md_table(["measure", "time", "note"], rows)
        + "\n\nPage cache warm. Slice steps time `dims.set_current_step` until the canvas has "
        "drawn; the xz-plane at level 0 reads one row band from every slice file."
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
