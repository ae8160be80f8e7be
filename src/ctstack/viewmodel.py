"""The view model: what a person changes while inspecting a stack, shared by every face.

One :class:`ViewModel` per stack (:func:`model_for`), keyed by the stack's resolved path, its
series pattern and its shape, so a napari layer and a Jupyter viewer of the same scan share one
crosshair, window, ROI and ruler. Cameras (zoom, pan) stay per face. The model imports no GUI
toolkit: faces observe it through :attr:`ViewModel.events` (psygnal signals, one per field,
each emitted once per change and never for a set to the current value) and write it through
its properties and methods.

The ROI and the threshold are persisted in the stack's ``roi.json`` (``ctstack.roi``) on
*commit*: a set from code commits at once; a face dragging a box or a slider sets with
``commit=False`` and commits on mouse-up. The write is atomic (temporary file + rename); of two
processes writing the same series, the last writer wins. Nothing else is persisted.

Not thread-safe: set it from one thread (a GUI's main thread, a notebook's kernel thread).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psygnal import Signal, SignalGroup

from . import windows
from .errors import CTStackError, InvalidArgument
from .roi import ROI, Selection, load_selection, save_selection

if TYPE_CHECKING:
    import numpy as np

    from .stack import Stack

Index3 = tuple[int, int, int]
Point3 = tuple[float, float, float]
Range = tuple[int, int]

COLORMAPS = ("gray", "gray_r", "viridis", "magma", "inferno", "plasma")
"""Colormaps every face supports (napari names); a face may accept more napari names."""
LAYOUTS = ("xy", "ortho", "3d")


@dataclass(frozen=True)
class Measurement:
    """A ruler line between two level-0 points ``(z, y, x)`` (voxel centres at integers).

    ``length`` is in ``unit``: the stack's physical unit from its voxel size, or ``"pixel"``
    when the voxel size is unknown.
    """

    start: Point3
    end: Point3
    length: float
    unit: str


class ViewEvents(SignalGroup):
    """One signal per field of the model; each carries the new value."""

    crosshair = Signal(tuple)
    window = Signal(tuple)
    window_preset = Signal(object)  # a preset name or None
    colormap = Signal(str)
    roi = Signal(object)  # a ctstack.roi.ROI
    threshold = Signal(object)  # a float or None
    level_3d = Signal(object)  # an int or None (the face's default: napari draws the coarsest)
    layout = Signal(str)
    measurements = Signal(tuple)  # of Measurement
    committed = Signal(object)  # the roi.json written


def _int3(values: Iterable[Any]) -> Index3:
    a, b, c = (int(v) for v in values)
    return (a, b, c)


def _float3(values: Iterable[Any]) -> Point3:
    a, b, c = (float(v) for v in values)
    return (a, b, c)


ModelKey = tuple[str, str | None, Index3]
"""(resolved source path, series pattern, shape): one ViewModel per key."""


def model_key(stack: Stack) -> ModelKey:
    """What makes two Stack objects one model: resolved path, series pattern, shape."""
    return (str(Path(stack.path).resolve()), stack.pattern, _int3(stack.shape))


class ViewModel:
    """The inspection state of one stack (see the module docstring and docs/architecture.md).

    Fields: ``crosshair``, ``window``, ``window_preset``, ``colormap``, ``roi``, ``threshold``,
    ``level_3d``, ``layout``, ``measurements``. ``restored`` tells whether the ROI came from
    ``roi.json``, ``load_error`` why it could not be read (None: fine); ``dirty`` whether an
    ROI or threshold change is not yet committed.
    """

    def __init__(self, stack: Stack) -> None:
        self.events = ViewEvents()
        self.key = model_key(stack)
        self.shape: Index3 = self.key[2]
        self._stacks: list[weakref.ref[Stack]] = []
        self._attach(stack)
        self.load_error: str | None = None
        saved = self._load(stack)
        self.restored = saved is not None
        selection = saved or Selection(ROI.full(stack, "no saved ROI; full volume"))
        self._roi: ROI = selection.roi
        self._threshold: float | None = selection.threshold
        self._crosshair: Index3 = _int3((n - 1) // 2 for n in self.shape)
        self._window: windows.Window | None = None
        self._window_preset: str | None = None
        self._sample: tuple[Any, np.ndarray] | None = None  # (coarsest level, its sample)
        self._colormap = "gray"
        self._level_3d: int | None = None
        self._layout = "xy"
        self._measurements: tuple[Measurement, ...] = ()
        self.dirty = False
        self.saved_to: Path | None = None

    def __repr__(self) -> str:
        return f"<ViewModel {self.key[0]} {self.key[1] or ''} crosshair={self._crosshair}>"

    # --- the stack ----------------------------------------------------------------------------

    def _attach(self, stack: Stack) -> None:
        self._stacks = [r for r in self._stacks if r() is not None and r() is not stack]
        self._stacks.append(weakref.ref(stack))

    def _reload(self, stack: Stack) -> None:
        """A Stack reopened: take the ROI and threshold from roi.json again (another writer may
        have changed them: the last writer wins), unless a change here is not committed yet."""
        if self.dirty:
            return
        saved = self._load(stack)
        self.restored = saved is not None
        if saved is not None:
            self.set_selection(saved, commit=False)
            if saved.threshold is None:
                self.set_threshold(None, commit=False)
            self.dirty = False

    def _load(self, stack: Stack) -> Selection | None:
        """The saved selection; an unreadable roi.json is reported in ``load_error`` (and left
        alone: a commit then fails with the same message) instead of failing the model."""
        try:
            saved = load_selection(stack)
        except CTStackError as exc:
            self.load_error = str(exc)
            return None
        self.load_error = None
        return saved

    @property
    def stack(self) -> Stack | None:
        """The most recently attached Stack of this model that is still alive."""
        for ref in reversed(self._stacks):
            stack = ref()
            if stack is not None:
                return stack
        return None

    # --- crosshair ----------------------------------------------------------------------------

    @property
    def crosshair(self) -> Index3:
        """Level-0 ``(z, y, x)`` indices, clamped to the shape."""
        return self._crosshair

    @crosshair.setter
    def crosshair(self, value: Sequence[float]) -> None:
        try:
            z, y, x = (float(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"crosshair is (z, y, x), got {value!r}") from exc
        new = _int3(
            min(max(math.floor(v + 0.5), 0), n - 1)
            for v, n in zip((z, y, x), self.shape, strict=True)
        )
        if new != self._crosshair:
            self._crosshair = new
            self.events.crosshair.emit(new)

    # --- window and colormap ------------------------------------------------------------------

    @property
    def has_window(self) -> bool:
        """Whether a window was set (else reading :attr:`window` computes the default preset)."""
        return self._window is not None

    @property
    def window(self) -> windows.Window:
        """``(low, high)``, always ``low < high``. Until set, the default percentile preset."""
        if self._window is None:
            self._window = self._compute(windows.DEFAULT_PRESET)
            self._window_preset = windows.DEFAULT_PRESET
        return self._window

    @window.setter
    def window(self, value: str | Sequence[float]) -> None:
        self.apply_window(value)

    @property
    def window_preset(self) -> str | None:
        """The preset the window came from, or None (set by hand, or dragged since)."""
        if self._window is None:
            return windows.DEFAULT_PRESET
        return self._window_preset

    @window_preset.setter
    def window_preset(self, name: str | None) -> None:
        if name is None:
            self._set_window(self.window, None)
        else:
            self.apply_window(name)

    def apply_window(self, value: str | Sequence[float]) -> windows.Window:
        """Set the window from a preset name (``ctstack.windows.PRESETS``) or ``(low, high)``.

        A Hounsfield preset on data that is not HU raises ``windows.NotHounsfield``; a flat
        ``(v, v)`` becomes ``(v, v + 1)``. Returns the window set.
        """
        name: str | None
        if isinstance(value, str):
            name = windows.preset(value).name
            window = self._compute(name)
        else:
            window, name = windows.resolve_window(self._stack_or_raise(), value)
        self._set_window(window, name)
        return window

    def presets(self) -> list[str]:
        """The preset names that apply to this stack (HU ones only on HU data)."""
        stack = self.stack
        return list(windows.PRESETS) if stack is None else windows.presets_for(stack)

    def _compute(self, name: str) -> windows.Window:
        stack = self._stack_or_raise()
        values = None
        if not windows.preset(name).hounsfield:
            coarsest = stack.levels[-1]
            if self._sample is None or self._sample[0] is not coarsest:
                self._sample = (coarsest, windows.sample(list(stack.levels)))
            values = self._sample[1]
        return windows.window_for(stack, name, values)

    def _set_window(self, window: windows.Window, preset: str | None) -> None:
        window = windows.valid_window(*window)
        changed = window != self._window
        preset_changed = preset != self._window_preset
        self._window, self._window_preset = window, preset
        if changed:
            self.events.window.emit(window)
        if preset_changed:
            self.events.window_preset.emit(preset)

    @property
    def colormap(self) -> str:
        """A napari colormap name (faces support at least those in ``COLORMAPS``)."""
        return self._colormap

    @colormap.setter
    def colormap(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"colormap is a name such as {', '.join(COLORMAPS)}")
        if name != self._colormap:
            self._colormap = name
            self.events.colormap.emit(name)

    # --- ROI and threshold --------------------------------------------------------------------

    @property
    def roi(self) -> ROI:
        """The box and Z range (level-0, half-open). Setting it commits to ``roi.json``."""
        return self._roi

    @roi.setter
    def roi(self, roi: ROI) -> None:
        self.set_roi(roi)

    def set_roi(self, roi: ROI, commit: bool = True) -> ROI:
        """Replace the ROI (clamped to the shape); emits ``roi`` when it differs, then commits
        (``commit=False`` while a face is still dragging: it commits on mouse-up)."""
        if not isinstance(roi, ROI):
            raise InvalidArgument(f"roi must be a ctstack.roi.ROI, got {type(roi).__name__}")
        roi = roi.clamp(self.shape)
        if roi != self._roi:
            self._roi = roi
            self.dirty = True
            self.events.roi.emit(roi)
        if commit:
            self.commit()
        return self._roi

    def set_region(
        self,
        z: Range | None = None,
        y: Range | None = None,
        x: Range | None = None,
        source: str = "user",
        reason: str | None = None,
        commit: bool = True,
    ) -> ROI:
        """Change some of the ROI's ranges (an empty range becomes one voxel); see set_roi."""
        old = self._roi
        pairs = [
            (int(r[0]), int(r[1])) if r is not None else o
            for r, o in zip((z, y, x), (old.z, old.y, old.x), strict=True)
        ]
        (z0, z1), (y0, y1), (x0, x1) = [(a, b) if b > a else (a, a + 1) for a, b in pairs]
        reason = old.reason if reason is None else reason
        new = ROI((z0, z1), (y0, y1), (x0, x1), source, reason, dict(old.extra))
        return self.set_roi(new, commit)

    @property
    def threshold(self) -> float | None:
        """The iso threshold (3D preview, meshes), or None. Setting it commits to roi.json."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self.set_threshold(value)

    def set_threshold(self, value: float | None, commit: bool = True) -> float | None:
        """Set the threshold; emits ``threshold`` when it differs, then commits (see set_roi)."""
        value = None if value is None else float(value)
        if value is not None and not math.isfinite(value):
            raise InvalidArgument(f"threshold must be finite, got {value}")
        if value != self._threshold:
            self._threshold = value
            self.dirty = True
            self.events.threshold.emit(value)
        if commit:
            self.commit()
        return value

    def set_selection(self, selection: Selection, commit: bool = True) -> None:
        """Set ROI and threshold together (e.g. an auto-ROI proposal); one commit."""
        self.set_roi(selection.roi, commit=False)
        if selection.threshold is not None:
            self.set_threshold(selection.threshold, commit=False)
        if commit:
            self.commit()

    def commit(self) -> Path | None:
        """Write the ROI and threshold to ``roi.json`` atomically when they changed since the
        last commit; returns the file (None when nothing was written). Raises CTStackError when
        the file cannot be written (the change stays pending)."""
        if not self.dirty:
            return None
        stack = self.stack
        if stack is None:
            return None
        self.saved_to = save_selection(stack, Selection(self._roi, self._threshold))
        self.dirty = False
        self.events.committed.emit(self.saved_to)
        return self.saved_to

    # --- 3D level and layout ------------------------------------------------------------------

    @property
    def level_3d(self) -> int | None:
        """The pyramid level drawn in 3D, or None for the face's default (the coarsest)."""
        return self._level_3d

    @level_3d.setter
    def level_3d(self, level: int | None) -> None:
        if level is not None:
            level = int(level)
            if level < 0:
                raise InvalidArgument(f"level_3d must be 0 or more (or None), got {level}")
        if level != self._level_3d:
            self._level_3d = level
            self.events.level_3d.emit(level)

    @property
    def layout(self) -> str:
        """``"xy"`` (one plane), ``"ortho"`` (XY, XZ, YZ and 3D) or ``"3d"`` (3D alone)."""
        return self._layout

    @layout.setter
    def layout(self, value: str) -> None:
        if value not in LAYOUTS:
            raise InvalidArgument(f"layout must be one of {LAYOUTS}, got {value!r}")
        if value != self._layout:
            self._layout = value
            self.events.layout.emit(value)

    # --- measurements -------------------------------------------------------------------------

    @property
    def measurements(self) -> tuple[Measurement, ...]:
        """The ruler lines, in the order they were made."""
        return self._measurements

    @measurements.setter
    def measurements(
        self, lines: Iterable[Measurement | tuple[Sequence[float], Sequence[float]]]
    ) -> None:
        new = tuple(
            self.measure(m.start, m.end) if isinstance(m, Measurement) else self.measure(*m)
            for m in lines
        )
        self._set_measurements(new)

    def measure(self, start: Sequence[float], end: Sequence[float]) -> Measurement:
        """A Measurement between two level-0 points (clipped to the volume), not stored."""
        a, b = self._point(start), self._point(end)
        voxel, unit = self._voxel()
        length = math.sqrt(sum(((q - p) * v) ** 2 for p, q, v in zip(a, b, voxel, strict=True)))
        return Measurement(a, b, length, unit)

    def add_measurement(self, start: Sequence[float], end: Sequence[float]) -> Measurement:
        """Measure and keep a ruler line; returns it."""
        m = self.measure(start, end)
        self._set_measurements((*self._measurements, m))
        return m

    def remove_measurement(self, index: int) -> None:
        lines = list(self._measurements)
        del lines[index]
        self._set_measurements(tuple(lines))

    def clear_measurements(self) -> None:
        self._set_measurements(())

    def remeasure(self) -> None:
        """Recompute lengths and units (after the stack's voxel size was changed)."""
        self._set_measurements(tuple(self.measure(m.start, m.end) for m in self._measurements))

    def _set_measurements(self, lines: tuple[Measurement, ...]) -> None:
        if lines != self._measurements:
            self._measurements = lines
            self.events.measurements.emit(lines)

    def _point(self, p: Sequence[float]) -> Point3:
        try:
            values = tuple(float(v) for v in p)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"a point is (z, y, x), got {p!r}") from exc
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise InvalidArgument(f"a point is three finite numbers (z, y, x), got {p!r}")
        return _float3(min(max(v, -0.5), n - 0.5) for v, n in zip(values, self.shape, strict=True))

    def _voxel(self) -> tuple[Point3, str]:
        stack = self.stack
        if stack is None or stack.unit == "pixel":
            return (1.0, 1.0, 1.0), "pixel"
        return _float3(stack.voxel_size), str(stack.unit)

    # --- helpers ------------------------------------------------------------------------------

    def _stack_or_raise(self) -> Stack:
        stack = self.stack
        if stack is None:
            raise InvalidArgument(f"the stack of {self.key[0]} is no longer open")
        return stack


_LOCK = threading.Lock()
_BY_KEY: weakref.WeakValueDictionary[ModelKey, ViewModel] = weakref.WeakValueDictionary()
# the model of each live Stack (a strong reference: keeps models alive)
_BY_STACK: weakref.WeakKeyDictionary[Stack, ViewModel] = weakref.WeakKeyDictionary()


def model_for(stack: Stack) -> ViewModel:
    """The one ViewModel of this stack: shared by every Stack object opened from the same path
    and series (with the same shape) while any of them is alive. Made on first use with the
    saved ROI and threshold; a Stack opened again re-reads them (unless a change is pending)."""
    with _LOCK:
        model = _BY_STACK.get(stack)
        if model is not None:
            return model
        key = model_key(stack)
        model = _BY_KEY.get(key)
        reopened = model is not None
        if model is None:
            model = _BY_KEY[key] = ViewModel(stack)
        else:
            model._attach(stack)
        _BY_STACK[stack] = model
    if reopened:
        model._reload(stack)
    return model
