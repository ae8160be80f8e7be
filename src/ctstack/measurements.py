"""Ruler measurements as text and CSV, shared by every face (napari's ruler, the Jupyter viewer).

One CSV layout everywhere: ``measurement`` (1, 2, ...), ``start_<axis>`` and ``end_<axis>``
(level-0 voxel coordinates for a stack), ``length``, ``unit`` ("pixel" when the voxel size is
unknown) and ``label`` (the length as shown, :func:`format_length`). Written atomically.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CTStackError

if TYPE_CHECKING:
    from .viewmodel import Measurement

METRES = {
    "nanometer": 1e-9,
    "micrometer": 1e-6,
    "millimeter": 1e-3,
    "centimeter": 1e-2,
    "meter": 1.0,
}
AXES = ("z", "y", "x")


def format_length(length: float, unit: str) -> str:
    """``length`` in ``unit`` as it reads best: mm from 1 mm up, else µm; "pixels" when the
    voxel size is unknown; an unknown unit as given."""
    if not math.isfinite(length):
        return ""
    if unit in ("pixel", "pixels", ""):
        return f"{length:.4g} pixels"
    factor = METRES.get(unit)
    if factor is None:
        return f"{length:.4g} {unit}"
    metres = length * factor
    if metres >= 1e-3:
        return f"{metres / 1e-3:.4g} mm"
    return f"{metres / 1e-6:.4g} µm"


def rows_of(measurements: Iterable[Measurement]) -> list[dict[str, Any]]:
    """One row per view-model Measurement: number, start, end, length, unit and label."""
    return [
        {
            "measurement": i,
            "start": tuple(float(v) for v in m.start),
            "end": tuple(float(v) for v in m.end),
            "length": float(m.length),
            "unit": m.unit,
            "label": format_length(m.length, m.unit),
        }
        for i, m in enumerate(measurements, start=1)
    ]


def write_csv(
    rows: Iterable[dict[str, Any]], path: str | os.PathLike[str], axes: Sequence[str] = AXES
) -> Path:
    """Write measurement rows (as :func:`rows_of` makes them) to ``path``; returns the file.

    Raises CTStackError naming the file when it cannot be written (nothing is left behind)."""
    path = Path(path).expanduser()
    header = [
        "measurement",
        *(f"start_{a}" for a in axes),
        *(f"end_{a}" for a in axes),
        "length",
        "unit",
        "label",
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for r in rows:
                writer.writerow(
                    [
                        r["measurement"],
                        *r["start"],
                        *r["end"],
                        repr(r["length"]),
                        r["unit"],
                        r["label"],
                    ]
                )
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CTStackError(f"{path}: cannot write the measurements: {exc.strerror or exc}") from exc
    return path
