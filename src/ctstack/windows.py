"""Window (contrast) presets: one table for every face (napari, the Jupyter viewer, the CLI).

Two kinds of preset:

- **Hounsfield** presets are a width and a level in HU (low = level - width/2, high = level +
  width/2). They only make sense on data in HU: a DICOM CT series whose rescale slope and
  intercept were applied (:func:`is_hounsfield`); anything else raises :class:`NotHounsfield`.
- **Percentile** presets are robust percentiles of a sample: the coarsest pyramid level (strided
  to at most ``COARSE_SAMPLE`` voxels), or, with no pyramid, a few strided level-0 planes. Full
  resolution is never scanned.

A window is always a valid ``(low, high)`` with ``low < high``: a flat image gets a one-unit
range (:func:`valid_window`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidArgument

if TYPE_CHECKING:
    from .stack import Stack

Window = tuple[float, float]

SAMPLE_SLICES = 7  # z-planes read to estimate percentiles when no pyramid exists
SAMPLE_PIXELS = 256  # each sampled plane is strided down to about this many pixels per axis
COARSE_SAMPLE = 2_000_000  # voxels read from the coarsest level at most


class NotHounsfield(InvalidArgument):
    """A Hounsfield preset was asked of data that is not in Hounsfield units."""


@dataclass(frozen=True)
class Preset:
    """One row of the table: a Hounsfield (width, level) or a (low %, high %) percentile pair."""

    name: str
    label: str
    kind: str  # "hounsfield" or "percentile"
    a: float  # width (HU) or low percentile
    b: float  # level (HU) or high percentile

    @property
    def hounsfield(self) -> bool:
        return self.kind == "hounsfield"


def _hu(name: str, label: str, width: float, level: float) -> Preset:
    return Preset(name, label, "hounsfield", float(width), float(level))


def _pct(name: str, label: str, low: float, high: float) -> Preset:
    return Preset(name, label, "percentile", float(low), float(high))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _pct("0.5-99.5", "percentiles 0.5-99.5", 0.5, 99.5),
        _pct("1-99", "percentiles 1-99", 1.0, 99.0),
        _pct("min-max", "minimum to maximum", 0.0, 100.0),
        _hu("brain", "CT brain (W80 L40)", 80, 40),
        _hu("soft-tissue", "CT soft tissue (W400 L40)", 400, 40),
        _hu("lung", "CT lung (W1500 L-600)", 1500, -600),
        _hu("bone", "CT bone (W1800 L400)", 1800, 400),
    )
}
DEFAULT_PRESET = "0.5-99.5"  # what the napari reader's contrast limits are


def preset(name: str) -> Preset:
    """The preset called ``name`` (case, spaces and underscores do not matter)."""
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    found = PRESETS.get(key)
    if found is None:
        raise InvalidArgument(f"unknown window preset {name!r}; choose from {', '.join(PRESETS)}")
    return found


def hounsfield_problem(stack: Stack) -> str | None:
    """Why ``stack`` is not in Hounsfield units, or None when it is (DICOM CT, rescaled)."""
    meta = getattr(stack, "metadata", None) or {}
    if meta.get("source_format") != "dicom":
        fmt = meta.get("source_format") or "not DICOM"
        return f"{stack.name} is {fmt} data, not a DICOM CT series"
    modality = str(meta.get("modality") or "?").upper()
    if modality != "CT":
        return f"{stack.name} is a DICOM {modality} series, not CT"
    if not meta.get("rescaled"):
        return f"{stack.name} has no rescale slope/intercept applied, so its values are not HU"
    return None


def is_hounsfield(stack: Stack) -> bool:
    """True for a DICOM CT series whose rescale (slope, intercept) was applied: values in HU."""
    return hounsfield_problem(stack) is None


def presets_for(stack: Stack) -> list[str]:
    """The preset names that apply to ``stack``: percentiles always, HU ones on HU data."""
    hu = is_hounsfield(stack)
    return [name for name, p in PRESETS.items() if hu or not p.hounsfield]


def valid_window(low: float, high: float) -> Window:
    """``(low, high)`` as floats, widened to one unit when they are equal (a flat image)."""
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InvalidArgument(f"a window needs finite values, got ({low}, {high})")
    if high < low:
        raise InvalidArgument(f"window low ({low:g}) must be below high ({high:g})")
    if high == low:
        high = low + 1.0
    return (low, high)


def hounsfield_window(p: Preset) -> Window:
    """``(level - width / 2, level + width / 2)``."""
    width, level = p.a, p.b
    return (level - width / 2, level + width / 2)


# --- percentiles of a small sample -----------------------------------------------------------


def sample(levels: Sequence[Any]) -> np.ndarray:
    """A small sample of the volume: the coarsest level if there are several, else a few planes.

    Finite values only (NaN and inf dropped). Never reads full resolution.
    """
    values = _sample_coarse(levels[-1]) if len(levels) > 1 else _sample_planes(levels[0])
    return values[np.isfinite(values)] if values.dtype.kind == "f" else values


def _sample_coarse(level: Any) -> np.ndarray:
    """The coarsest level, strided in y and x so that at most COARSE_SAMPLE voxels are read."""
    z, y, x = level.shape
    step = max(1, int(np.ceil(np.sqrt(z * y * x / COARSE_SAMPLE))))
    return np.asarray(level[:, ::step, ::step]).ravel()


def _sample_planes(level: Any) -> np.ndarray:
    """A few evenly spaced z-planes of level 0 (ends excluded), strided to about 256 x 256."""
    z, y, x = level.shape
    picks = np.unique(np.linspace(0, z - 1, SAMPLE_SLICES + 2).round().astype(int)[1:-1])
    if picks.size == 0:
        picks = np.array([0])
    step = max(1, max(y, x) // SAMPLE_PIXELS)
    planes = [np.asarray(level[int(k), ::step, ::step]) for k in picks]
    return np.concatenate([p.ravel() for p in planes])


def percentile_window(values: np.ndarray, low: float, high: float) -> Window:
    """The ``low`` and ``high`` percentiles of ``values``; a flat result widens to min-max, then
    to one unit, so the window is always valid."""
    if values.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(values, (low, high)))
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    return valid_window(lo, hi)


def window_for(stack: Stack, name: str, values: np.ndarray | None = None) -> Window:
    """The window of preset ``name`` on ``stack``.

    Percentile presets use ``values`` when given (a :func:`sample` already taken), else sample
    ``stack.levels``. A Hounsfield preset on data that is not HU raises NotHounsfield.
    """
    p = preset(name)
    if p.hounsfield:
        problem = hounsfield_problem(stack)
        if problem is not None:
            raise NotHounsfield(
                f"the {p.label} preset is in Hounsfield units, but {problem}; "
                f"use a percentile preset ({', '.join(presets_for(stack))}) or a (low, high) window"
            )
        return hounsfield_window(p)
    if values is None:
        values = sample(list(stack.levels))
    return percentile_window(values, p.a, p.b)


def resolve_window(
    stack: Stack, value: str | Sequence[float], values: np.ndarray | None = None
) -> tuple[Window, str | None]:
    """``(window, preset name or None)`` from a preset name or a ``(low, high)`` pair."""
    if isinstance(value, str):
        p = preset(value)
        return window_for(stack, p.name, values), p.name
    try:
        low, high = value
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"a window is a preset name or (low, high), got {value!r}") from exc
    return valid_window(low, high), None
