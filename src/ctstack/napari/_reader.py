"""The npe2 reader: one image layer per stack, multiscale when the pyramid cache exists.

The reader never builds the pyramid itself. Inside a running napari it hands the new layer to
the viewer's build controller (``_qt/build.py``) through a zero-delay timer; a script calling
:func:`read_stack` directly gets level 0 and builds when it wants (``stack.build_pyramid``).
Engine errors become napari notifications that name the file, never a traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._layer import layer_data, max_size_setting

SLICE_SUFFIXES = {".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg", ".dcm", ".dicom", ".ima"}
LayerData = tuple[Any, dict[str, Any], str]


def napari_get_reader(path: str | list[str]) -> Callable[..., list] | None:
    """Claim folders, slice files, multi-page TIFFs and DICOM files; None for anything else."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir() or p.suffix.lower() in SLICE_SUFFIXES or _is_dicom(p):
        return read_for_napari
    return None


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


def read_for_napari(path: str | list[str]) -> list:
    """The npe2 reader command: layer data, or napari's empty sentinel after an error notice."""
    if isinstance(path, list | tuple):
        path = path[0]
    try:
        data = read_stack(path)
    except Exception as exc:
        notify_error(exc, path)
        return [(None,)]
    schedule_background_build(data[0][1]["metadata"]["stack"])
    return data


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
    The engine's warnings become napari notifications (bad slices: one, with the count).
    """
    from ..pyramid import cached_levels
    from ..stack import open_stack

    max_size = max_size or max_size_setting()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        stack = open_stack(path, pattern=pattern, voxel_size=voxel_size, unit=unit)
    stack.gui_max_size = max_size
    stack.gui_cache_dir = cache_dir
    levels = cached_levels(stack, max_size=max_size, cache_dir=cache_dir) or [stack.data]
    if notify:
        notify_stack_warnings(stack)
    return [layer_data(stack, levels)]


def warning_messages(stack) -> list[str]:
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


def notify_stack_warnings(stack) -> None:
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


def schedule_background_build(stack) -> None:
    """Inside a Qt event loop, let the viewer that receives this stack's layer build its pyramid."""
    if "qtpy" not in sys.modules:
        return
    from qtpy.QtWidgets import QApplication

    if QApplication.instance() is None:
        return
    from ._qt.build import attach_when_added

    attach_when_added(stack)
