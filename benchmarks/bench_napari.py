"""napari plugin responsiveness on the benchmark stack: first frame, slice steps against napari's
own render floor, the xz-plane step, and the longest event-loop stalls.

``run(quick)`` returns a markdown section (``python benchmarks/run.py napari``); it needs a
display and starts a virtual one when there is none. The cache goes to a private temporary
folder, so "without a cache" really builds and other benchmarks' caches are left alone.

Slice steps are compared with **the render floor**: the same volume held in RAM as numpy arrays
(every pyramid level, so napari picks the same level), ``projection_mode="none"``, in the same
viewer, stepped in alternating blocks with the plugin's layer (only one of the two visible).
A ratio of 1.0 means a step costs what napari costs to draw a plane it already has in memory.
Goals: z steps <= 1.1x at level 0 and zoomed out; an xz step at level 1 <= 1.25x; first frame
without a cache < 1 s (median of 5); the longest stall while a level-0 xz plane loads < 100 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

import _harness

PLUGIN = "napari-ctstack"
FIRST_RUNS = 5  # first frames without a cache (the median is the figure)
BLOCK = 8  # steps per layer before switching to the other one
ROUNDS = 10  # blocks per layer: BLOCK * ROUNDS timed steps each
PAUSE = 0.1  # seconds of event loop after a block's untimed first step (about one frame)
# (figure, goal): the ratio goals of issue 14
GOALS = {"z0": 1.1, "zout": 1.1, "xz1": 1.25}


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
        self._tick()  # a stall that lasts until now counts too
        self.timer.stop()
        return self.longest


def _drawn(canvas: Any) -> Callable[[], None]:
    """A function that lets pending events run, then renders ``canvas`` synchronously."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()

    def wait() -> None:
        app.processEvents()
        canvas.native.repaint()  # paintGL now: the frame is on screen when this returns
        app.processEvents()

    return wait


def _main_canvas(viewer: Any) -> Any:
    return viewer.window._qt_viewer.canvas._scene_canvas


def _new_viewer() -> tuple[Any, Callable[[], None]]:
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1200, 900)
    wait = _drawn(_main_canvas(viewer))
    wait()
    return viewer, wait


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _settle(predicate: Callable[[], bool], timeout: float = 600.0) -> None:
    """Run the event loop until ``predicate()`` holds."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    end = time.perf_counter() + timeout
    while not predicate() and time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


# --- 1. first frames without a cache, the background build -------------------------------------


def _first_frames(folder: Path, rows: list[list[object]]) -> None:
    """FIRST_RUNS opens without a cache (builds cancelled), then one whose build completes
    while the stall meter runs; napari alone (a layer of the same shape, no reading) for scale."""
    from ctstack.napari import read_stack
    from ctstack.napari._qt.build import controller_for

    firsts: list[float] = []
    floors: list[float] = []
    reads: list[float] = []
    for _ in range(FIRST_RUNS):  # the plugin's own share: headers, contrast sample, layer data
        t0 = time.perf_counter()
        [(_, kwargs, _)] = read_stack(folder, notify=False)
        reads.append(time.perf_counter() - t0)
    plain = {k: v for k, v in kwargs.items() if k not in ("metadata", "multiscale")}
    shape = tuple(kwargs["metadata"]["ctstack"]["shape"])
    for run in range(FIRST_RUNS):
        viewer, wait = _new_viewer()
        t0 = time.perf_counter()
        viewer.open(str(folder), plugin=PLUGIN)
        wait()
        firsts.append(time.perf_counter() - t0)
        ctl = controller_for(viewer)
        last = run == FIRST_RUNS - 1
        if not last:
            for job in ctl.jobs.values():
                job.cancel.set()
            _settle(lambda ctl=ctl: not ctl.busy)
            viewer.close()
        else:
            meter = StallMeter()
            meter.start()
            t0 = time.perf_counter()
            _settle(lambda ctl=ctl, t0=t0: time.perf_counter() - t0 > 0.3 and not ctl.busy)
            build_s = time.perf_counter() - t0
            stall = meter.stop()
            levels = len(viewer.layers[kwargs["name"]].level_shapes)
            viewer.close()
        # napari alone: a layer of the same shape and look whose planes cost nothing to read
        viewer, wait = _new_viewer()
        zeros = np.broadcast_to(np.zeros((1, 1, 1), kwargs["metadata"]["stack"].dtype), shape)
        t0 = time.perf_counter()
        viewer.add_image(zeros, **plain)
        wait()
        floors.append(time.perf_counter() - t0)
        viewer.close()
    first = statistics.median(firsts)
    rows.append(
        [
            f"viewer.open -> first frame, no cache (median of {FIRST_RUNS})",
            _harness.fmt_s(first),
            f"goal < 1 s: {'met' if first < 1 else 'MISSED'}; runs "
            + ", ".join(f"{t:.2f}" for t in firsts),
        ]
    )
    rows.append(
        [
            "  napari alone: add_image of a same-shape array + first draw",
            _harness.fmt_s(statistics.median(floors)),
            "no pixel read, no plugin; runs " + ", ".join(f"{t:.2f}" for t in floors),
        ]
    )
    rows.append(
        [
            "  the reader alone: read_stack (headers, contrast sample)",
            _harness.fmt_s(statistics.median(reads)),
            "runs " + ", ".join(f"{t:.2f}" for t in reads),
        ]
    )
    rows.append(
        ["background pyramid build (GUI running)", _harness.fmt_s(build_s), f"{levels} levels"]
    )
    rows.append(["longest event-loop stall during the build", _ms(stall), "goal < 100 ms"])


# --- 2. steps against the in-RAM floor ---------------------------------------------------------


def _in_ram(stack: Any, levels: list[Any], zs: range) -> list[np.ndarray]:
    """Every level of the stack as numpy arrays. Level 0 holds real planes at ``zs`` (the
    planes the steps visit); its other planes are zero pages never touched, so a 4 GB level
    costs no memory or time beyond those planes (napari reads one plane per step either way)."""
    level0 = np.zeros(stack.shape, stack.dtype)
    for z in zs:
        stack.read_slice(z, level0[z])
    return [level0, *(np.asarray(a) for a in levels[1:])]


def _interleaved(
    viewer: Any,
    wait: Callable[[], None],
    layers: dict[str, Any],
    axis: int,
    start: int,
    model: Any = None,
) -> dict[str, list[float]]:
    """Step ``axis`` of ``model`` (default: the viewer) in alternating blocks, only the block's
    layer of ``viewer`` visible and selected; each block walks the same BLOCK positions for
    every layer (forward, so read-ahead sees real travel), the order alternating by round."""
    dims = (model or viewer).dims
    times: dict[str, list[float]] = {name: [] for name in layers}
    order = list(layers.items())
    for r in range(ROUNDS):
        at = [start + r * BLOCK + i for i in range(BLOCK)]
        for name, layer in order if r % 2 == 0 else order[::-1]:
            for other in layers.values():
                other.visible = other is layer
            viewer.layers.selection.active = layer  # the stepped layer is the selected one
            dims.set_current_step(axis, at[0] - 1)  # untimed: the block's starting point
            wait()
            _settle(lambda: False, PAUSE)  # the pause between two steps of a scroll
            for pos in at:
                t0 = time.perf_counter()
                dims.set_current_step(axis, pos)
                wait()
                times[name].append(time.perf_counter() - t0)
    for layer in layers.values():
        layer.visible = True
    return times


def _ratio_rows(label: str, times: dict[str, list[float]], goal: float) -> list[list[object]]:
    plug, floor = times["plugin"], times["in RAM"]
    r50 = statistics.median(plug) / statistics.median(floor)
    r95 = _pct(plug, 0.95) / _pct(floor, 0.95)
    verdict = "met" if max(r50, r95) <= goal else "MISSED"
    return [
        [
            f"{label}: plugin",
            f"p50 {_ms(statistics.median(plug))}, p95 {_ms(_pct(plug, 0.95))}",
            f"{len(plug)} steps",
        ],
        [
            f"{label}: in RAM (floor)",
            f"p50 {_ms(statistics.median(floor))}, p95 {_ms(_pct(floor, 0.95))}",
            "numpy levels, projection none",
        ],
        [
            f"{label}: ratio",
            f"p50 {r50:.2f}x, p95 {r95:.2f}x",
            f"goal <= {goal}x: {verdict}",
        ],
    ]


def _steps(folder: Path, rows: list[list[object]]) -> None:
    from ctstack.napari._qt.build import controller_for

    viewer, wait = _new_viewer()
    t0 = time.perf_counter()
    [layer] = viewer.open(str(folder), plugin=PLUGIN)
    wait()
    rows.append(
        ["viewer.open -> first frame, cache hit", _harness.fmt_s(time.perf_counter() - t0), ""]
    )
    _settle(lambda: not controller_for(viewer).busy)
    layer = viewer.layers[layer.name]
    stack = layer.metadata["stack"]
    start = stack.shape[0] // 4
    t0 = time.perf_counter()
    ram = _in_ram(stack, stack.levels, range(start - 1, start + BLOCK * ROUNDS))
    load_s = time.perf_counter() - t0
    twin = viewer.add_image(
        ram,
        multiscale=True,
        name="in RAM",
        scale=layer.scale,
        translate=layer.translate,
        contrast_limits=layer.contrast_limits,
        colormap="gray",
        projection_mode="none",
    )
    layers = {"plugin": layer, "in RAM": twin}

    # z steps zoomed out (napari picks a coarse level), then at 1:1 (level 0)
    viewer.reset_view()
    wait()
    out = _interleaved(viewer, wait, layers, 0, start)
    level_out = (layer.data_level, twin.data_level)
    viewer.scene.camera.zoom = 1.0 / float(layer.scale[-1])  # one screen pixel per voxel
    wait()
    full = _interleaved(viewer, wait, layers, 0, start)
    level_full = (layer.data_level, twin.data_level)
    rows += _ratio_rows(f"z step, zoomed out (level {level_out[0]})", out, GOALS["zout"])
    rows += _ratio_rows(f"z step, 1:1 (level {level_full[0]})", full, GOALS["z0"])
    if level_out[0] != level_out[1] or level_full[0] != level_full[1]:
        rows.append(
            ["WARNING", "plugin and floor drew different levels", f"{level_out}, {level_full}"]
        )

    xz_rows(viewer, wait, layers, stack.shape, rows)
    rows.append(
        [
            "(setup) floor levels read into RAM",
            _harness.fmt_s(load_s),
            "level 0: the planes stepped",
        ]
    )
    viewer.close()


def _ortho(viewer: Any, layers: dict[str, Any]) -> tuple[Any, Callable[[], None], Any] | None:
    """The XZ view of the plugin's orthogonal views (its model, a redraw of both canvases, the
    views), or None when they are not available."""
    try:
        from ctstack.napari import orthogonal_views

        views = orthogonal_views(viewer)
        model = views.models["xz"]
        canvas = views.canvases["xz"].canvas._scene_canvas
        if any(views.mirror("xz", lay) is None for lay in layers.values()):
            raise RuntimeError("the xz view does not mirror both layers")
    except Exception as exc:  # fall back to the transposed main viewer, and say so
        print(f"orthogonal views unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None
    main, xz = _drawn(_main_canvas(viewer)), _drawn(canvas)

    def wait() -> None:
        main()
        xz()

    return model, wait, views


def xz_rows(
    viewer: Any,
    wait: Callable[[], None],
    layers: dict[str, Any],
    shape: tuple[int, int, int],
    rows: list[list[object]],
) -> None:
    """The xz-plane step at level 1 against the floor, and the stall while a level-0 xz plane
    loads: in the orthogonal views' XZ view when they exist, else in the transposed main view."""
    nz, ny, _ = shape
    viewer.reset_view()  # the main view zoomed out, as it would be beside the views
    found = _ortho(viewer, layers)
    if found is not None:
        model, wait, views = found
        where = "XZ view"
        shown = {name: views.mirror("xz", lay) for name, lay in layers.items()}
    else:
        model, views, where = viewer, None, "main viewer transposed"
        viewer.dims.order = (1, 0, 2)
        shown = layers
    for lay in shown.values():
        lay.locked_data_level = 1
    model.reset_view()
    wait()
    xz = _interleaved(viewer, wait, layers, 1, ny // 3, model)
    rows.extend(_ratio_rows(f"xz step ({where}, level 1)", xz, GOALS["xz1"]))

    # a level-0 xz plane reads a row band of every slice file: how long the event loop stalls
    layers["in RAM"].visible = False
    shown["plugin"].locked_data_level = 0
    meter = StallMeter()
    t0 = time.perf_counter()
    if views is None:  # napari reads the plane while it slices, on the GUI thread
        meter.start()
        model.dims.set_current_step(1, ny // 3 + 2 * BLOCK * ROUNDS)
        wait()
        step = time.perf_counter() - t0
    else:  # the step shows a coarse stand-in; the plane is read in the background
        model.dims.set_current_step(1, ny // 3 + 2 * BLOCK * ROUNDS)
        wait()
        step = time.perf_counter() - t0
        meter.start()
        _settle(lambda: not views.loading("xz"))
    stall = meter.stop()
    wait()
    load = time.perf_counter() - t0
    how = (
        "the step draws a coarse stand-in, the plane is read off the GUI thread"
        if views is not None
        else "napari slices the main viewer on the GUI thread"
    )
    rows.append(
        [
            f"xz plane at level 0 ({where}): step / loaded / longest stall while loading",
            f"{_ms(step)} / {_harness.fmt_s(load)} / {_ms(stall)}",
            f"goal stall < 100 ms: {'met' if stall < 0.1 else 'MISSED'} ({how}; {nz} files)",
        ]
    )


def _session(folder: Path) -> list[list[object]]:
    from ctstack.stack import open_stack

    stack = open_stack(folder)
    _harness.warm(stack.files)
    rows: list[list[object]] = []
    _first_frames(folder, rows)
    print(_harness.md_table(["measure", "time", "note"], rows), file=sys.stderr)  # progress
    _harness.warm(stack.files)
    _steps(folder, rows)
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
                rows = _session(folder)
        finally:
            os.environ.pop("CTSTACK_CACHE_DIR", None)
    from ctstack.stack import open_stack

    shape = " x ".join(map(str, open_stack(folder).shape))
    return (
        f"### napari plugin ({shape} uint16, max_size {max_size})\n\n"
        + _harness.md_table(["measure", "time", "note"], rows)
        + "\n\nPage cache warm, 1200 x 900 window. A step times `dims.set_current_step` until "
        "the canvas has drawn. The floor is the same volume in RAM as numpy levels with "
        f'`projection_mode="none"` in the same viewer, stepped in alternating blocks of {BLOCK} '
        f"({BLOCK * ROUNDS} steps each); ratios are plugin / floor."
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
