"""JSON for the CLI's ``--json`` output: strict JSON, where a NaN or infinity becomes ``null``.

``json.dumps`` writes bare ``NaN``/``Infinity`` by default, which no strict JSON parser reads.
Every sub-command prints through :func:`dumps` (``info``, ``export``, ``mesh``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf, also numpy scalars and arrays) as None;
    tuples become lists, numpy scalars Python numbers and paths strings."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [finite(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(value)``, refusing NaN (``allow_nan=False``)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
