"""The Jupyter viewer widget: an anywidget whose state is the shared ViewModel plus a camera.

The browser (``viewer.js``) renders; this side syncs state as traitlets, answers tile requests
through a background :class:`~ctstack.jupyter._server.TileServer`, builds a missing pyramid in
the background and relays browser-answered requests (screenshots) as Futures. See
``src/ctstack/jupyter/CONTRACT.md`` for the traitlets, messages and geometry.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets as t

from .. import viewmodel
from ..errors import CTStackError, InvalidArgument
from ..pyramid import cached_levels
from . import _exporting, _facts, _tiles, _tools, _volume
from ._binding import FIELDS, ModelBinding, to_trait
from ._build import PyramidBuild, build_for
from ._reader import TileReader
from ._server import Reply, TileServer, weak_handler, weak_sender

if TYPE_CHECKING:
    from .._types import StrPath
    from ..roi import Selection
    from ..stack import Stack

ASSETS = Path(__file__).parent
MODULES = ("viewer.js", "volume3d.js", "tools.js", "export.js")
"""The browser module's files, joined in this order: viewer.js declares ``ADDONS``, the others
register their add-ons in it at load (see viewer.js)."""
RENDERERS = ("auto", "webgl2", "canvas2d")
DEFAULT_SIZE = {"ortho": 360, "xy": 640, "3d": 640}


def browser_module() -> str:
    """The ES module anywidget loads: the files of MODULES that exist, joined."""
    parts = [(ASSETS / name) for name in MODULES]
    return "\n".join(
        f"// ---- {p.name}\n" + p.read_text(encoding="utf-8") for p in parts if p.is_file()
    )


class ScreenshotError(CTStackError):
    """The browser could not make the screenshot (or the viewer was closed first)."""


class Viewer(anywidget.AnyWidget):
    """A CT stack in a notebook: XY/XZ/YZ planes drawn by the browser, state in Python.

    Make one with :func:`ctstack.view`. ``crosshair``, ``window``, ``window_preset``,
    ``colormap`` and ``layout`` mirror the stack's shared :class:`~ctstack.viewmodel.ViewModel`
    (``v.model``): setting them here, in the browser or on the model (napari included) updates
    the rest. ``camera`` is this viewer's own. Observe any of them with ``v.observe``.
    (``layout`` reaches the browser as ``pane_layout``: ipywidgets keeps the name ``layout``
    for a widget's CSS layout.)

    The kernel handles widget messages between cells: while a long cell runs, the viewer
    pauses (no tiles are served) and browser-answered requests cannot resolve.
    """

    _esm = browser_module()
    _css = ASSETS / "viewer.css"

    # the shared view model's fields (both ways)
    crosshair = t.List(t.Int(), default_value=[0, 0, 0], minlen=3, maxlen=3).tag(sync=True)
    window = t.List(t.Float(), default_value=[0.0, 1.0], minlen=2, maxlen=2).tag(sync=True)
    window_preset = t.Unicode(None, allow_none=True).tag(sync=True)
    colormap = t.Unicode("gray").tag(sync=True)
    # level-0 half-open box {"z": [a, b], "y": ..., "x": ..., "source", "reason"}; a set
    # commits to roi.json (the browser sets it on mouse-up only)
    roi = _tools.RoiTrait().tag(sync=True)  # a ctstack.roi.ROI is taken too (tools)
    threshold = t.Float(None, allow_none=True).tag(sync=True)  # the iso value (3D, meshes)
    level_3d = t.Int(None, allow_none=True).tag(sync=True)  # None: the best that fits texture_mb
    # [{"start": [z, y, x], "end": [z, y, x], "length": float, "unit": str}, ...]
    measurements = _tools.MeasurementsTrait(t.Dict()).tag(sync=True)  # pairs too (tools)
    # "xy" | "ortho". Not synced under its own name: ipywidgets' DOMWidgetView reads a synced
    # `layout` as its CSS Layout widget and fails on a string; the browser gets `pane_layout`
    layout = t.Unicode("ortho")
    pane_layout = t.Unicode("ortho").tag(sync=True)
    # this face's own camera (both ways): {"xy": {"zoom": z | None, "center": [row, col]}, ...}
    camera = t.Dict().tag(sync=True)
    # written by Python only
    shape = t.List(t.Int()).tag(sync=True)
    levels = t.List(t.Dict()).tag(sync=True)
    generation = t.Int(0).tag(sync=True)
    dtype = t.Unicode("uint16").tag(sync=True)
    voxel = t.List(t.Float(), allow_none=True, default_value=None).tag(sync=True)
    unit = t.Unicode("pixel").tag(sync=True)
    tile = t.Int(_tiles.TILE).tag(sync=True)
    presets = t.List(t.Unicode()).tag(sync=True)
    colormaps = t.List(t.Unicode()).tag(sync=True)
    histogram = t.Dict().tag(sync=True)
    file_numbers = t.List(t.Int(), allow_none=True, default_value=None).tag(sync=True)
    warning = t.Unicode("").tag(sync=True)
    progress = t.Dict().tag(sync=True)
    force_canvas2d = t.Bool(False).tag(sync=True)
    client_cache_mb = t.Int(256).tag(sync=True)
    size = t.Int(360).tag(sync=True)
    # written by the browser
    renderer = t.Unicode("").tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    # --- 3D pane (volume3d.js, _volume.py) ---
    texture_mb = t.Float(128.0).tag(sync=True)  # the browser's 3D texture budget (MiB)
    volume = t.Dict().tag(sync=True)  # Python-written: the level sent to the 3D pane
    render_3d = t.Enum(_volume.MODES, "mip").tag(sync=True)
    camera_3d = t.Union([t.Unicode(), t.Dict()], default_value=dict(_volume.DEFAULT_CAMERA)).tag(
        sync=True
    )
    overlays_3d = t.Bool(True).tag(sync=True)  # crosshair planes and ROI box in the 3D pane
    # --- end 3D pane ---
    # --- ROI and ruler tools (tools.js, _tools.py) ---
    tool_status = t.Unicode("").tag(sync=True)  # Python-written: auto-ROI progress / outcome
    # --- end ROI and ruler tools ---
    # --- export (export.js, _exporting.py) ---
    # Python-written: {"state": "idle"|"planning"|"running"|"cancelling"|"done"|"failed"|
    # "cancelled", "done", "total", "message", "out", "job", "format", "summary", "result"}
    export_state = t.Dict(dict(_exporting.IDLE)).tag(sync=True)
    # --- end export ---

    def __init__(
        self,
        stack: Stack,
        layout: str = "ortho",
        renderer: str = "auto",
        size: int | None = None,
        client_cache_mb: int = 256,
        cache_dir: StrPath | None = None,
    ) -> None:
        if renderer not in RENDERERS:
            raise InvalidArgument(f"renderer must be one of {RENDERERS}, got {renderer!r}")
        if layout not in viewmodel.LAYOUTS:
            raise InvalidArgument(f"layout must be one of {viewmodel.LAYOUTS}, got {layout!r}")
        size = DEFAULT_SIZE[layout] if size is None else int(size)
        if size < 16 or client_cache_mb < 1:
            raise InvalidArgument("size must be at least 16 px and client_cache_mb at least 1")
        self._stack = stack
        self._cache_dir = cache_dir
        self._browser = False  # True while the browser's state update is applied
        self._notes: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._shots: dict[int, tuple[Future[Path], Path]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._build: PyramidBuild | None = None
        self._build_key = 0
        # custom browser messages by "type", beyond tiles/cancel/screenshot: add-ons register here
        self._handlers: dict[str, Callable[[dict[str, Any], list[Any]], None]] = {}
        self.model = viewmodel.model_for(stack)
        self.model.layout = layout
        if stack.pyramid is None:
            cached_levels(stack, cache_dir=cache_dir)  # a valid cache: no build (reads no pixel)
        self._reader = TileReader(stack)
        self._numbers = _facts.file_numbers(stack)
        self._notes["slices"] = _facts.slice_warning(stack, self._numbers)
        # the whole first state goes with the widget's opening message
        super().__init__(
            shape=list(stack.shape),
            dtype=self._reader.dtype.name,
            voxel=list(stack.voxel_size),
            unit=_facts.unit_label(stack.unit),
            colormaps=list(viewmodel.COLORMAPS),
            presets=self.model.presets(),
            file_numbers=self._numbers,
            force_canvas2d=renderer == "canvas2d",
            client_cache_mb=int(client_cache_mb),
            size=size,
            camera=self._default_camera(),
            warning="; ".join(n for n in self._notes.values() if n),
            **{name: to_trait(name, getattr(self.model, name)) for name in FIELDS},
            pane_layout=self.model.layout,
            **self._level_state(),
        )
        self._binding = ModelBinding(self, self.model, _from_browser, Viewer._refused)
        self._server = TileServer(weak_handler(self, "_serve"), weak_sender(self, "_reply"))
        self.on_msg(_on_msg)
        weakref.finalize(self, _stop, self._server, self._binding)
        self._volume = _volume.VolumePane(self)  # 3D pane: level choice + brick transport
        weakref.finalize(self, self._volume.close)
        self._tools = _tools.Tools(self)  # ROI/ruler tools: auto-ROI thread, ruler messages
        self._exporter = _exporting.wire(self)  # export panel + v.export (_exporting.py)
        if stack.pyramid is None:
            self._start_build()

    @t.validate("camera_3d")
    def _check_camera_3d(self, proposal: dict[str, Any]) -> Any:
        return _volume.check_camera(proposal["value"])

    @t.validate("texture_mb")
    def _check_texture_mb(self, proposal: dict[str, Any]) -> float:
        if not proposal["value"] > 0:
            raise InvalidArgument(f"texture_mb must be positive, got {proposal['value']!r}")
        return float(proposal["value"])

    # --- ROI and ruler tools (_tools.py) ---

    @t.validate("roi")
    def _check_roi(self, proposal: dict[str, Any]) -> dict[str, Any]:
        return _tools.roi_value(proposal["value"], self._stack.shape)

    def auto_roi(self) -> Future[Selection]:
        """Find the object (``ctstack.roi.suggest``, on a thread: it may build the pyramid) and,
        unless it declines, set ``roi`` and ``threshold``; the button "Auto" does the same.
        Returns a Future of the proposal; ``tool_status`` tells the progress and outcome."""
        return self._tools.auto()

    def export_measurements(self, path: StrPath) -> Path:
        """Write ``measurements`` to a CSV file (the columns of napari's export) and return it."""
        return _tools.export_measurements(self.model, path)

    # --- end ROI and ruler tools ---

    # --- export (_exporting.py) ---

    def export(
        self,
        out: StrPath | None = None,
        level: int = 0,
        format: str = "tiff",
        region: str = "roi",
        window: Any = None,
        overwrite: bool = False,
        **kw: Any,
    ) -> Future[_exporting.ExportResult]:
        """Export on a background thread (the kernel stays free); returns a Future of the
        ``ExportResult``, the same ``ctstack.export`` (or ``ctstack.mesh``) gives.

        ``format``: what ``ctstack export`` writes (tiff, png, bmp, tiff-stack, ome-zarr) or a
        mesh (stl, ply, obj: at ``threshold=``, else the model's threshold, else Otsu).
        ``region``: "roi" (``v.roi``) or "full"; ``z=``/``y=``/``x=`` override an axis.
        ``window``: None, True (the viewer's window, 8-bit), ``(low, high)`` or a preset name.
        ``out`` None: ``<stack name>_roi`` with the format's extension, in the working folder.
        Other keywords go to the engine (prefix, ngff_version, max_size, compression, shard;
        invert for meshes). One export runs at a time: another one meanwhile fails its Future
        with ExportBusy. Errors fail the Future and show in ``export_state`` (and the panel);
        ``cancel_export()`` or ``close()`` stop it and remove the partial output.
        """
        req = None
        try:
            req = self._exporter.request(out, level, format, region, window, overwrite, **kw)
        except (CTStackError, ValueError, TypeError) as exc:
            return self._exporter.fail(exc, req)
        return self._exporter.start(req)

    def cancel_export(self) -> bool:
        """Stop the running export (its Future fails with ``Cancelled`` once the partial output
        is removed); False when none runs."""
        return self._exporter.cancel()

    # --- end export ---

    def __repr__(self) -> str:
        return f"<ctstack.jupyter.Viewer of {self._stack!r}>"

    # --- public ---------------------------------------------------------------------------------

    @property
    def stack(self) -> Stack:
        """The Stack on screen."""
        return self._stack

    @property
    def stats(self) -> dict[str, int]:
        """Counts since the viewer opened: ``requests``, ``messages`` (replies), ``bytes`` (tile
        bytes sent), ``tiles``, plus ``dropped``, ``cancelled`` and ``errors``; the 3D pane's
        ``volume_bytes``, ``volume_bricks``, ``volume_requests``, ``volume_cancelled`` and
        ``volume_errors``."""
        return {**self._server.stats.as_dict(), **self._volume.sender.stats.as_dict()}

    @property
    def building(self) -> bool:
        """Whether a background pyramid build is running."""
        return self._build is not None and self._build.running

    def wait_for_pyramid(self, timeout: float | None = None) -> bool:
        """Block until a background build ends (scripts, tests); True when none is running."""
        if self._build is not None:
            self._build.join(timeout)
        return not self.building

    def plan(
        self, view: str, pane: tuple[float, float] | None = None, dpr: float = 1.0
    ) -> tuple[int, list[tuple[int, int]]]:
        """``(level, tiles)`` the browser fetches for ``view`` with the current camera in a
        ``(width, height)`` CSS-pixel pane (default: ``size`` square): the rule viewer.js uses."""
        view = _tiles.check_view(view)
        width, height = pane or (self.size, self.size)
        rows, cols = _tiles.plane_shape(self.stack.shape, view)
        vscale = _tiles.aspect(self.stack.voxel_size, view)
        cam = self.camera.get(view) or {}
        zoom = cam.get("zoom") or _tiles.fit_zoom((rows, cols), (width, height), vscale)
        level = _tiles.choose_level(zoom, len(self.levels), dpr)
        center = cam.get("center") or [(rows - 1) / 2, (cols - 1) / 2]
        half_w, half_h = width / 2 / zoom, height / 2 / (zoom * vscale)
        # level-0 pixel i spans [i - 0.5, i + 0.5); level-k edges are level-0 edges / 2**k
        top, bottom = center[0] - half_h + 0.5, center[0] + half_h + 0.5
        left, right = center[1] - half_w + 0.5, center[1] + half_w + 0.5
        lz, ly, lx = self.levels[level]["shape"]
        f = float(1 << level)
        level_plane = _tiles.plane_shape((lz, ly, lx), view)
        return level, _tiles.visible_tiles(level_plane, top / f, left / f, bottom / f, right / f)

    def save_screenshot(self, path: StrPath, view: str | None = None) -> Future[Path]:
        """Ask the browser for a PNG of one pane (``"xy"``, ``"xz"``, ``"yz"``, ``"3d"``) or of all
        panes (None); returns a Future that resolves to the written ``Path``.

        The browser answers through the kernel, which handles widget messages only between
        cells: the Future cannot resolve while the cell that asked is still running. Wait for
        it in the next cell (``fut.result()``), or poll with ``jupyter-ui-poll``. If the viewer
        is not displayed, nothing answers; a closed viewer fails the Future.
        """
        if view is not None and view != "3d":
            _tiles.check_view(view)
        fut: Future[Path] = Future()
        if self._closed:
            fut.set_exception(ScreenshotError("the viewer is closed"))
            return fut
        n = next(self._ids)
        with self._lock:
            self._shots[n] = (fut, Path(path).expanduser())
        self.send({"type": "screenshot", "id": n, "view": view})
        return fut

    def close(self) -> None:
        """Stop background work (requests, pyramid build) and close the widget."""
        if not self._closed:
            self._closed = True
            if self._build is not None:
                self._build.leave(self._build_key)
            _stop(self._server, self._binding)
            self._volume.close()
            self._exporter.close()  # cancels a running export (export)
            with self._lock:
                shots, self._shots = self._shots, {}
            for fut, _ in shots.values():
                fut.set_exception(
                    ScreenshotError("the viewer was closed before the browser replied")
                )
        super().close()

    @t.observe("layout")
    def _layout_to_browser(self, change: dict[str, Any]) -> None:
        self.pane_layout = self.layout  # the current value: a refused one was put back already

    @t.observe("pane_layout")
    def _layout_from_browser(self, change: dict[str, Any]) -> None:
        try:
            self.layout = self.pane_layout
        finally:
            self.pane_layout = self.layout  # refused by the model: put back

    # --- browser messages ---------------------------------------------------------------------

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """A state update from the browser (marked, so refused values warn instead of raise)."""
        self._browser = True
        try:
            super().set_state(sync_data)
        finally:
            self._browser = False

    def _message(self, content: Any, buffers: list[Any]) -> None:
        """One custom message from the browser (kernel's main thread: never reads pixels)."""
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "tiles":
            self._server.submit(content)
        elif kind == "cancel":
            self._server.cancel(content.get("ids"))
        elif kind == "screenshot":
            self._screenshot_reply(content, buffers)
        elif isinstance(kind, str) and kind in self._handlers:
            self._handlers[kind](content, buffers)
        # "ready": the traitlets are synced already; the view asks for its tiles itself

    def _screenshot_reply(self, content: dict[str, Any], buffers: list[Any]) -> None:
        with self._lock:
            entry = self._shots.pop(content.get("id"), None)  # type: ignore[arg-type]
        if entry is None:
            return
        fut, path = entry
        if content.get("error") or not buffers:
            fut.set_exception(ScreenshotError(str(content.get("error") or "no image came back")))
            return
        try:
            path.write_bytes(bytes(buffers[0]))
        except OSError as exc:
            fut.set_exception(ScreenshotError(f"cannot write {path}: {exc}"))
            return
        fut.set_result(path)

    # --- the server's side (its thread) -------------------------------------------------------

    def _serve(self, content: dict[str, Any]) -> Reply:
        """Answer one tiles request: read the tiles (server thread), one buffer each."""
        echo = {k: content.get(k) for k in ("id", "view", "level", "plane")}
        generation = self.generation
        if content.get("generation", generation) != generation:
            return (
                {"type": "tiles", **echo, "generation": generation, "tiles": [], "dropped": True},
                [],
            )
        before = len(self._stack.bad_slices)
        tiles = self._reader.read(
            content.get("view"), content.get("level"), content.get("plane"), content.get("tiles")
        )
        if len(self._stack.bad_slices) != before or any(tile.missing for tile in tiles):
            self._slices_note()
        reply = {
            "type": "tiles",
            **echo,
            "generation": generation,
            "dtype": self._reader.dtype.name,
            "tiles": [tile.header() for tile in tiles],
        }
        return reply, [tile.data.data.cast("B") for tile in tiles]

    def _reply(self, content: dict[str, Any], buffers: list[Any]) -> None:
        if self._closed:
            raise RuntimeError("the viewer is closed")
        self.send(content, buffers=buffers)

    # --- state helpers ------------------------------------------------------------------------

    def _default_camera(self) -> dict[str, Any]:
        cam = {}
        for view in _tiles.VIEWS:
            rows, cols = _tiles.plane_shape(self._stack.shape, view)
            cam[view] = {"zoom": None, "center": [(rows - 1) / 2, (cols - 1) / 2]}
        return cam

    def _level_state(self) -> dict[str, Any]:
        """``levels``, ``histogram`` and the next ``generation`` for the levels now served."""
        shapes = self._reader.set_levels()
        return {
            "levels": _facts.level_list(shapes),
            "histogram": _facts.histogram(self._stack.levels),
            "generation": self.generation + 1,
        }

    def _update_levels(self) -> None:
        state = self._level_state()
        with self.hold_sync():
            for name, value in state.items():
                setattr(self, name, value)

    def _set_note(self, key: str, text: str) -> None:
        with self._lock:
            if text:
                self._notes[key] = text
            else:
                self._notes.pop(key, None)
            joined = "; ".join(n for n in self._notes.values() if n)
        if joined != self.warning:
            self.warning = joined

    def _slices_note(self) -> None:
        self._set_note("slices", _facts.slice_warning(self._stack, self._numbers))

    def _refused(self, name: str, message: str | None) -> None:
        """A state change refused (the message) or, later, one accepted (None: clear it)."""
        self._set_note("state", message or "")

    # --- background build ---------------------------------------------------------------------

    def _start_build(self) -> None:
        """Build the pyramid in the background (or wait for the build another viewer of this
        Stack started); progress and the result come back on the build thread."""
        self.progress = {"label": "building the pyramid", "done": 0, "total": self._stack.shape[0]}
        self._build, self._build_key = build_for(
            self._stack, self._build_progress, self._build_done, cache_dir=self._cache_dir
        )

    def _build_progress(self, done: int, total: int) -> None:
        if not self._closed:
            self.progress = {"label": "building the pyramid", "done": done, "total": total}

    def _build_done(self, error: str | None) -> None:
        if self._closed:
            return
        if error is None:
            self._update_levels()
            self.presets = self.model.presets()
            self._set_note("build", "")
        else:
            self._set_note("build", f"pyramid build failed ({error}); showing level 0 only")
        self._slices_note()
        self.progress = {}


def _from_browser(widget: Viewer) -> bool:
    return widget._browser


def _on_msg(widget: Viewer, content: Any, buffers: list[Any]) -> None:
    widget._message(content, buffers)


def _stop(server: TileServer, binding: ModelBinding) -> None:
    server.close()
    binding.close()
