"""What the viewer tells the browser about a stack: level shapes, units, file numbers, the
histogram of the coarsest level and the bad-slice warning (plain JSON values)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import windows

if TYPE_CHECKING:
    from ..stack import Stack

HISTOGRAM_BINS = 128
UNIT_LABELS = {"nanometer": "nm", "micrometer": "µm", "millimeter": "mm", "centimeter": "cm"}
SHOWN_SLICES = 5  # bad slices named in the warning; the rest are counted


def level_list(shapes: Sequence[Sequence[int]]) -> list[dict[str, list[int]]]:
    """The ``levels`` traitlet: ``[{"shape": [z, y, x]}, ...]``, level 0 first."""
    return [{"shape": [int(n) for n in shape]} for shape in shapes]


def unit_label(unit: str) -> str:
    """``"mm"``, ``"µm"``, ... for the stack's normalised unit; ``"pixel"`` when unknown."""
    return UNIT_LABELS.get(unit, "pixel")


def file_numbers(stack: Stack) -> list[int] | None:
    """The file number of each z for a numbered slice folder (DESIGN's numbering: z =
    (number - first) / step), else None."""
    numbering = stack.metadata.get("numbering")
    if not numbering or not stack.files:
        return None
    try:
        first, step = int(numbering["first"]), int(numbering.get("step", 1))
    except (KeyError, TypeError, ValueError):
        return None
    return [first + z * step for z in range(stack.shape[0])]


def histogram(levels: Sequence[Any], bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """``{"counts": [...], "low": a, "high": b}`` of the coarsest level (a strided sample of
    it, or a few level-0 planes when there is no pyramid: ``windows.sample``)."""
    values = windows.sample(list(levels))
    if values.size == 0:
        return {"counts": [], "low": 0.0, "high": 1.0}
    low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low + 1.0
    counts, _ = np.histogram(values, bins=bins, range=(low, high))
    return {"counts": [int(n) for n in counts], "low": low, "high": high}


def slice_warning(stack: Stack, numbers: list[int] | None) -> str:
    """One line naming the missing and bad slices (shown as zeros), or ``""``."""
    missing = sorted(set(stack.missing))
    bad = sorted({b.z for b in stack.bad_slices} - set(missing))
    parts = []
    if missing:
        parts.append(f"{_count(len(missing), 'missing slice')} ({_names(missing, numbers)})")
    if bad:
        parts.append(f"{_count(len(bad), 'bad slice')} ({_names(bad, numbers)})")
    return " and ".join(parts) + " shown as zeros" if parts else ""


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _names(zs: list[int], numbers: list[int] | None) -> str:
    def name(z: int) -> str:
        return f"z {z}" if numbers is None else f"z {z}, file {numbers[z]}"

    shown = ", ".join(name(z) for z in zs[:SHOWN_SLICES])
    more = len(zs) - SHOWN_SLICES
    return shown + (f", and {more} more" if more > 0 else "")
