"""The reader, Qt-free: one image layer per stack, multiscale when the pyramid cache exists.

:func:`read_stack` returns layer data for scripts and ``ViewerModel``; it never builds the
pyramid (a script builds when it wants: ``stack.build_pyramid``). Inside napari the manifest's
reader is ``_qt/reader.py``, which also hands the new layer to the viewer's build controller.
Engine errors become napari notifications that name the file, never a traceback, and a stack's
notes reach the user through its :class:`Notifier` (``open_stack(report=...)``).

What this face decided when it opened a stack (the pyramid's max_size and cache_dir, the
notifier) is kept here, keyed by the Stack (:func:`opened`): never as attributes on the Stack.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._layer import layer_data, max_size_setting

if TYPE_CHECKING:
    from ..stack import Stack

SLICE_SUFFIXES = {".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg", ".dcm", ".dicom", ".ima"}
LayerData = tuple[Any, dict[str, Any], str]
"""napari's (data, kwargs, layer type) for one layer."""
ReaderResult = list[tuple[Any, ...]]
"""What a napari reader returns: layer data, or the empty sentinel ``[(None,)]``."""


class Notifier:
    """A stack's reporter in napari: each note becomes one warning notification.

    While held (opening, a background build) notes are collected instead, and whoever holds
    shows one summary afterwards (:func:`warning_messages`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = 0
        self.collected: list[str] = []

    def __call__(self, message: str) -> None:
        with self._lock:
            if self._held:
                self.collected.append(message)
                return
        from napari.utils.notifications import show_warning

        show_warning(message)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            self._held += 1
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1


@dataclass
class Opened:
    """What the napari face chose for a stack it opened."""

    max_size: int
    cache_dir: str | os.PathLike[str] | None = None
    notifier: Notifier = field(default_factory=Notifier)


_OPENED: weakref.WeakKeyDictionary[Stack, Opened] = weakref.WeakKeyDictionary()


def opened(stack: Stack) -> Opened | None:
    """The face's record of a stack it opened (None for a stack opened elsewhere)."""
    return _OPENED.get(stack)


def pyramid_max_size(stack: Stack) -> int | None:
    """The max_size of the pyramid the stack shows: the engine's record (``stack.pyramid``)
    when it has one, else what this face opened or last built it with."""
    settings = getattr(getattr(stack, "pyramid", None), "settings", None)
    size = getattr(settings, "max_size", None)
    if size:
        return int(size)
    record = opened(stack)
    return record.max_size if record is not None else None


def pyramid_cache_dir(stack: Stack) -> str | os.PathLike[str] | None:
    """The cache_dir for the stack's builds (the engine's record, else this face's)."""
    settings = getattr(getattr(stack, "pyramid", None), "settings", None)
    cache_dir = getattr(settings, "cache_dir", None)
    if cache_dir is not None:
        return cache_dir
    record = opened(stack)
    return record.cache_dir if record is not None else None


def remember_max_size(stack: Stack, max_size: int) -> None:
    """Record the max_size the face now shows the stack with (after a build)."""
    record = _OPENED.get(stack)
    if record is None:
        _OPENED[stack] = Opened(max_size)
    else:
        record.max_size = max_size


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], ReaderResult] | None:
    """Claim folders, slice files, multi-page TIFFs and DICOM files; None for anything else."""
    return read_for_napari if claims(path) else None


def claims(path: str | list[str]) -> bool:
    """Whether the plugin reads ``path`` (one folder or file of a kind it knows)."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return False
        path = path[0]
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in SLICE_SUFFIXES or _is_dicom(p)


def _is_dicom(path: Path) -> bool:
    """A file without a known extension may be DICOM: check the 'DICM' magic at byte 128."""
    if path.suffix or not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_for_napari(path: str | list[str]) -> ReaderResult:
    """Layer data, or napari's empty sentinel after an error notification."""
    if isinstance(path, list | tuple):
        path = path[0]
    try:
        return read_stack(path)
    except Exception as exc:
        notify_error(exc, path)
        return [(None,)]


def read_stack(
    path: str | os.PathLike[str],
    pattern: str | None = None,
    voxel_size: Any = None,
    unit: str | None = None,
    max_size: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    notify: bool = True,
) -> list[LayerData]:
    """Open ``path`` and return ``[(data, kwargs, "image")]``: multiscale on a cache hit.

    Reads headers plus a few strided planes for contrast; with no cache the data is level 0.
    The stack's notes become napari notifications: at open one summary (bad slices: one line,
    with the count; nothing with ``notify=False``), later one per bad slice found by a read.
    """
    from ..pyramid import cached_levels
    from ..stack import open_stack

    max_size = max_size or max_size_setting()
    notifier = Notifier()
    with notifier.hold():
        stack = open_stack(path, pattern=pattern, voxel_size=voxel_size, unit=unit, report=notifier)
    notifier.collected.clear()  # summarised below from the stack's facts
    _OPENED[stack] = Opened(max_size, cache_dir, notifier)
    levels = cached_levels(stack, max_size=max_size, cache_dir=cache_dir) or [stack.data]
    if notify:
        notify_stack_warnings(stack)
    return [layer_data(stack, levels)]


def warning_messages(stack: Stack) -> list[str]:
    """The stack's warnings for the user: one line for all bad slices, then the others."""
    out = []
    if stack.bad_slices:
        first = stack.bad_slices[0]
        n = len(stack.bad_slices)
        out.append(
            f"{stack.name}: {n} bad slice{'s' if n != 1 else ''} shown as zeros "
            f"(first: z={first.z}, {first.reason})"
        )
    out += [w for w in stack.warnings if not w.startswith("bad slice z=")]
    return out


def notify_stack_warnings(stack: Stack) -> None:
    """Show the stack's warnings as napari warning notifications."""
    from napari.utils.notifications import show_warning

    for message in warning_messages(stack):
        show_warning(message)


def notify_error(exc: BaseException, path: Any) -> None:
    """Show an engine error (its message names the file) as a napari error notification."""
    from napari.utils.notifications import show_error

    from ..errors import CTStackError

    if isinstance(exc, CTStackError):
        show_error(str(exc))
    else:
        show_error(f"{path}: cannot open ({type(exc).__name__}: {exc})")
