"""Fixtures for the Jupyter viewer's kernel side: small phantom stacks, viewers that are closed
after each test, and a recorder standing in for the browser's end of the comm."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("anywidget")

import ctstack
from ctstack.sample import write_phantom_stack

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class Browser:
    """Records what the kernel sends (``viewer.send``) and plays the browser's messages."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.sent: list[tuple[dict[str, Any], list[Any]]] = []
        self.threads: set[int] = set()
        self._cond = threading.Condition()
        viewer.send = self._send

    def _send(self, content: dict[str, Any], buffers: list[Any] | None = None) -> None:
        with self._cond:
            self.threads.add(threading.get_ident())
            self.sent.append((content, list(buffers or [])))
            self._cond.notify_all()

    def message(self, content: dict[str, Any], buffers: list[Any] | None = None) -> None:
        """A custom message from the browser, as ipywidgets delivers it (kernel thread)."""
        self.viewer._handle_custom_msg(content, buffers or [])

    def request(self, view: str, level: int, plane: int, tiles: list[list[int]], rid: int) -> None:
        self.message(
            {
                "type": "tiles",
                "id": rid,
                "view": view,
                "level": level,
                "plane": plane,
                "tiles": tiles,
                "generation": self.viewer.generation,
            }
        )

    def replies(self, n: int, timeout: float = 10.0) -> list[tuple[dict[str, Any], list[Any]]]:
        """Wait until ``n`` messages were sent; return them all."""
        end = time.monotonic() + timeout
        with self._cond:
            while len(self.sent) < n:
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.sent)} of {n} replies after {timeout} s")
                self._cond.wait(left)
            return list(self.sent)

    def reply_to(self, rid: int, timeout: float = 10.0) -> tuple[dict[str, Any], list[Any]]:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for content, buffers in self.sent:
                    if content.get("id") == rid and content.get("type") in ("tiles", "error"):
                        return content, buffers
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no reply to request {rid}")
                self._cond.wait(left)


def tile_array(header: dict[str, Any], buffer: Any, dtype: str) -> np.ndarray:
    """A tile as the browser decodes it: little-endian, row-major, h x w."""
    data = np.frombuffer(bytes(buffer), np.dtype(dtype).newbyteorder("<"))
    return data.reshape(header["h"], header["w"])


def hold_builds(stack: ctstack.Stack) -> threading.Event:
    """Make the pyramid build's readers (threads ``ctstack-read*``) of ``stack`` wait until the
    returned event is set (20 s at most); the viewer's own reads go on."""
    gate = threading.Event()
    original = stack.read_slice

    def read_slice(z: int, out: Any = None) -> np.ndarray:
        if threading.current_thread().name.startswith("ctstack-read"):
            gate.wait(20)
        return original(z, out=out)

    stack.read_slice = read_slice
    return gate


@pytest.fixture
def make_stack(tmp_path: Path) -> Callable[..., ctstack.Stack]:
    """A phantom slice folder of ``shape`` opened as a Stack (voxel 5 x 5 x 5 µm)."""
    count = iter(range(1000))

    def make(shape: tuple[int, int, int] = (12, 40, 52), dtype: str = "uint16") -> ctstack.Stack:
        folder = tmp_path / f"scan{next(count)}"
        write_phantom_stack(folder, shape, dtype, seed=3, voxel_size_um=5.0)
        return ctstack.open_stack(folder)

    return make


@pytest.fixture
def open_viewer(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``open_viewer(source, **options)`` -> (viewer, Browser); every viewer closed afterwards."""
    made: list[Any] = []

    def make(source: Any, **options: Any) -> tuple[Any, Browser]:
        options.setdefault("cache_dir", tmp_path / "cache")
        viewer = ctstack.view(source, **options)
        made.append(viewer)
        return viewer, Browser(viewer)

    yield make
    for viewer in made:
        viewer.close()
