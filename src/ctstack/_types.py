"""Types shared by the public signatures of the engine (no runtime behaviour of their own)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, TypeAlias

__all__ = ["AxisRange", "Progress", "StrPath"]

StrPath: TypeAlias = str | os.PathLike[str]
"""A file system path as the user may give it: a string or a ``pathlib.Path`` (or os.PathLike)."""

AxisRange: TypeAlias = slice | Sequence[int] | None
"""One axis of a region in level-0 voxels: ``slice(start, stop)``, a ``(start, stop)`` pair, or
None for the whole axis (half-open; a slice step is refused)."""


class Progress(Protocol):
    """A progress callback: ``progress(done, total)`` as work advances; its result is ignored.

    ``done`` counts finished units of ``total`` (slices read, planes written, ...); a run that
    completes ends with ``done == total``. Called from the thread doing the work.
    """

    def __call__(self, done: int, total: int, /) -> object: ...
