"""The kernel half of the viewer's ROI and ruler tools (``tools.js``).

``roi`` and ``measurements`` values from code are checked and converted here (a
``ctstack.roi.ROI`` or a dict for the ROI; dicts, pairs of points or view-model Measurements
for the ruler); "Auto" runs ``ctstack.roi.suggest`` on a thread of its own (it may build the
pyramid: the kernel's main thread must stay free) and sets ROI and threshold on the model;
the ruler's add / remove / clear messages edit the model's measurements, which measures them.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import traitlets as t

from ..errors import CTStackError, InvalidArgument
from ..measurements import rows_of, write_csv
from ..roi import ROI, Selection, suggest

if TYPE_CHECKING:
    import os

    from ..viewmodel import ViewModel
    from ._widget import Viewer

AXES = ("z", "y", "x")
FINDING = "finding the object…"
PROGRESS_SECONDS = 0.25  # auto-ROI status updates (one message each) at most this often


# --- values from code -------------------------------------------------------------------------


def _pair(axis: str, value: Any, size: int) -> list[int]:
    """One ``[start, stop)`` range as ints, checked against the axis ``size``."""
    try:
        start, stop = value
        a, b = float(start), float(stop)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"roi {axis} must be [start, stop], got {value!r}") from exc
    if not (math.isfinite(a) and math.isfinite(b)) or a != int(a) or b != int(b):
        raise InvalidArgument(f"roi {axis} must be two whole numbers, got {value!r}")
    if b <= a:
        raise InvalidArgument(f"roi {axis} range {value!r} is empty: stop must exceed start")
    if b <= 0 or a >= size:
        raise InvalidArgument(f"roi {axis} range {value!r} lies outside the stack (0..{size})")
    return [max(0, int(a)), min(size, int(b))]


def roi_value(value: Any, shape: Sequence[int]) -> dict[str, Any]:
    """The ``roi`` traitlet's value from a ``ROI`` or a dict with z, y and x ranges (level-0,
    half-open; cut to ``shape`` where they stick out). Raises InvalidArgument saying what is
    wrong: a missing axis, a range that is not two whole numbers, empty, or outside."""
    value = _roi_dict(value)
    missing = [a for a in AXES if a not in value]
    if missing:
        raise InvalidArgument(f"roi needs the {', '.join(missing)} range(s), got {value!r}")
    out: dict[str, Any] = {a: _pair(a, value[a], int(n)) for a, n in zip(AXES, shape, strict=True)}
    out["source"] = str(value.get("source") or "user")
    out["reason"] = str(value.get("reason") or "")
    return out


def _roi_dict(value: Any) -> dict[str, Any]:
    """An ROI as its dict; a dict as it is; anything else raises InvalidArgument."""
    if isinstance(value, ROI):
        return value.to_dict()
    if not isinstance(value, dict):
        raise InvalidArgument(
            f"roi is a ctstack.roi.ROI or a dict with z, y and x as [start, stop], "
            f"got {type(value).__name__}"
        )
    return value


def measurement_values(value: Any) -> list[dict[str, Any]]:
    """The ``measurements`` traitlet's value from dicts (start, end; length and unit are
    recomputed by the model), ``(start, end)`` pairs or view-model Measurements."""
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Sequence):
        raise InvalidArgument(f"measurements are a list of lines, got {type(value).__name__}")
    out = []
    for m in value:
        if isinstance(m, dict):
            if "start" not in m or "end" not in m:
                raise InvalidArgument(f"a measurement needs start and end points, got {m!r}")
            out.append(dict(m))
            continue
        start, end = (m.start, m.end) if hasattr(m, "start") else _points(m)
        out.append({"start": list(start), "end": list(end)})
    return out


def _points(m: Any) -> tuple[Any, Any]:
    try:
        start, end = m
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"a measurement is (start, end) or a dict, got {m!r}") from exc
    return start, end


class RoiTrait(t.Dict):
    """The ``roi`` traitlet: takes a ``ctstack.roi.ROI`` too (held as its dict); anything but
    an ROI or a dict raises InvalidArgument (the viewer's validator checks the ranges)."""

    def validate(self, obj: Any, value: Any) -> Any:
        return super().validate(obj, _roi_dict(value))


class MeasurementsTrait(t.List):  # type: ignore[type-arg]
    """The ``measurements`` traitlet: takes (start, end) pairs and Measurements too."""

    def validate(self, obj: Any, value: Any) -> Any:
        return super().validate(obj, measurement_values(value))


def export_measurements(model: ViewModel, path: str | os.PathLike[str]) -> Path:
    """Write the model's measurements as CSV (napari's columns, ``ctstack.measurements``)."""
    return write_csv(rows_of(model.measurements), path)


# --- the tools' kernel side -------------------------------------------------------------------


class Tools:
    """Handles the tools' browser messages for one viewer and runs its auto-ROI searches."""

    def __init__(self, viewer: Viewer) -> None:
        self._viewer = weakref.ref(viewer)
        self._lock = threading.Lock()
        self._auto: Future[Selection] | None = None
        self._last = 0.0
        self._applying = False  # the auto thread is setting its proposal
        self._cancel = threading.Event()  # set when the viewer closes during a search
        viewer._handlers["roi_auto"] = self._on_auto
        viewer._handlers["measure"] = self._on_measure
        viewer.observe(self._on_roi, names="roi")

    # -- auto ROI --

    def auto(self) -> Future[Selection]:
        """Start an auto-ROI search (or return the running one). The Future gives the
        proposal; an accepted one is set on the model (ROI and threshold, one commit)."""
        viewer = self._viewer()
        with self._lock:
            if self._auto is not None and not self._auto.done():
                return self._auto
            fut: Future[Selection] = Future()
            self._auto = fut
        if viewer is None or viewer._closed:
            fut.set_exception(CTStackError("the viewer is closed"))
            return fut
        viewer.tool_status = FINDING
        thread = threading.Thread(target=self._run, args=(fut,), name="ctstack-auto-roi")
        thread.daemon = True
        thread.start()
        return fut

    def _run(self, fut: Future[Selection]) -> None:
        viewer = self._viewer()
        if viewer is None:
            fut.set_exception(CTStackError("the viewer is closed"))
            return
        stack = viewer.stack
        try:
            if viewer.building:
                self._status(f"{FINDING} (waiting for the pyramid)")
                viewer.wait_for_pyramid()
            selection = suggest(stack, progress=self._progress, cancel=self._cancel)
        except Exception as exc:  # shown in the browser, raised by the Future
            self._status(f"auto-ROI failed: {exc}")
            fut.set_exception(exc)
            return
        roi = selection.roi
        try:
            if roi.source == "auto" and not viewer._closed:
                self._applying = True
                try:
                    viewer.model.set_selection(selection)
                finally:
                    self._applying = False
                self._status(f"auto-ROI: {roi.reason}")
            else:
                self._status(roi.reason or "auto-ROI declined")
        except Exception as exc:  # e.g. roi.json not writable
            self._status(f"auto-ROI could not be saved: {exc}")
            fut.set_exception(exc)
            return
        fut.set_result(selection)

    def _progress(self, done: int, total: int) -> None:
        viewer = self._viewer()
        if viewer is None or viewer._closed:
            self._cancel.set()  # the build stops at its next check; the Future fails
            return
        now = time.monotonic()
        if done >= total or now - self._last >= PROGRESS_SECONDS:
            self._last = now
            self._status(f"{FINDING} building the pyramid {done}/{total}")

    def _status(self, text: str) -> None:
        viewer = self._viewer()
        if viewer is not None and not viewer._closed:
            viewer.tool_status = text

    def _on_roi(self, change: dict[str, Any]) -> None:
        """Another ROI (drawn, typed, napari's): an older auto-ROI outcome no longer applies."""
        viewer = self._viewer()
        if viewer is None or self._applying:
            return
        if viewer.tool_status.startswith(("auto-ROI", "auto ROI")):
            viewer.tool_status = ""

    def _on_auto(self, content: dict[str, Any], buffers: list[Any]) -> None:
        self.auto()

    # -- ruler --

    def _on_measure(self, content: dict[str, Any], buffers: list[Any]) -> None:
        """``{"op": "add", "start": [z, y, x], "end": [z, y, x]}``, ``{"op": "remove",
        "index": i}`` or ``{"op": "clear"}``; a bad one shows its reason in the status."""
        viewer = self._viewer()
        if viewer is None:
            return
        model = viewer.model
        op = content.get("op")
        try:
            if op == "add":
                model.add_measurement(content.get("start"), content.get("end"))  # type: ignore[arg-type]
            elif op == "remove":
                index = content.get("index")
                if not isinstance(index, int) or not 0 <= index < len(model.measurements):
                    raise InvalidArgument(f"no measurement {index!r} to remove")
                model.remove_measurement(index)
            elif op == "clear":
                model.clear_measurements()
            else:
                raise InvalidArgument(f"unknown ruler operation {op!r}")
        except CTStackError as exc:
            viewer.tool_status = f"ruler: {exc}"
            return
        if viewer.tool_status.startswith("ruler:"):
            viewer.tool_status = ""  # the last error no longer applies
