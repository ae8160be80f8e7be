"""The npe2 reader and sample data inside napari: read (``.._reader``), then build in the back.

The manifest points here rather than at the Qt-free reader because a layer read in a running
napari is handed to its viewer's build controller (``build.py``) through a zero-delay timer:
the layer exists only once napari has added it, after the reader returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QApplication

from .._layer import stack_of
from .._reader import ReaderResult, claims, read_for_napari
from .._sample import sample_folder

if TYPE_CHECKING:
    from ...stack import Stack


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], ReaderResult] | None:
    """Claim folders, slice files, multi-page TIFFs and DICOM files; None for anything else."""
    return read_and_build if claims(path) else None


def read_and_build(path: str | list[str]) -> ReaderResult:
    """The npe2 reader command: layer data (its pyramid then builds in the background), or
    napari's empty sentinel after an error notification."""
    data = read_for_napari(path)
    if data and data[0][0] is not None:
        schedule_background_build(stack_of(_Meta(data[0][1])))
    return data


def make_phantom() -> ReaderResult:
    """npe2 sample data: the phantom folder read through the plugin's own reader."""
    return read_and_build(str(sample_folder()))


class _Meta:
    """Lets ``stack_of`` read a LayerData kwargs' metadata like a layer's."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.metadata = kwargs.get("metadata") or {}


def schedule_background_build(stack: Stack | None) -> None:
    """In a running Qt app, let the viewer that receives this stack's layer build its pyramid."""
    if stack is None or QApplication.instance() is None:
        return
    from .build import attach_when_added

    attach_when_added(stack)
