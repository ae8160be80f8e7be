"""Export from the Jupyter viewer: plan (no pixel read), one background job at a time with
progress and cancel, and a ``Future`` of the engine's ExportResult.

``Viewer.export`` / ``cancel_export`` and the export panel (``export.js``: the messages
``export_plan``, ``export`` and ``export_cancel``) all come here. The work is the engine's own
``ctstack.export`` (``ctstack.mesh`` for STL/PLY/OBJ) on a thread of its own, so the kernel
stays free; progress goes to the viewer's ``export_state`` traitlet.
"""

from __future__ import annotations

import operator
import os
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._export import EXTENSIONS, FORMATS, ExportResult, level_shapes, output_name, plan_export
from .._export.guard import MESH_FORMATS, check_target
from .._export.regions import make_region
from .._export.writing import human_bytes
from ..errors import Cancelled, CTStackError, ExportError, InvalidArgument, UnsupportedExport

if TYPE_CHECKING:
    from ..stack import Stack
    from ..viewmodel import ViewModel
    from ._widget import Viewer

ALL_FORMATS = (*FORMATS, *MESH_FORMATS)
"""What ``ctstack export`` writes, plus the meshes of ``ctstack mesh`` (model threshold)."""
REGIONS = ("roi", "full")
EXPORT_OPTIONS = ("prefix", "ngff_version", "max_size", "compression", "shard")
MESH_OPTIONS = ("threshold", "invert")
PROGRESS_S = 0.1  # export_state updates at most this often (plus the first and the last)
IDLE: dict[str, Any] = {"state": "idle", "done": 0, "total": 0, "message": "", "out": ""}


class ExportBusy(ExportError):
    """An export of this viewer is still running; only one runs at a time."""


@dataclass
class Request:
    """One export as asked: the output, level, format, level-0 region and window."""

    out: Path
    level: int
    format: str
    region: dict[str, Any]  # z/y/x for the engine (None = whole axis)
    region_name: str
    window: tuple[float, float] | None
    overwrite: bool
    threshold: float | None = None  # meshes: the iso value (None: Otsu, as the CLI does)
    options: dict[str, Any] = field(default_factory=dict)  # more engine keywords

    @property
    def mesh(self) -> bool:
        return self.format in MESH_FORMATS


@dataclass
class Job:
    """The running export: its request, cancel event, Future and thread."""

    number: int
    request: Request
    future: Future[ExportResult]
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class Exporter:
    """A viewer's exports. ``publish(state)`` sets the viewer's ``export_state``; ``send``
    answers the panel; ``pyramid_wait(timeout)`` waits for the viewer's own pyramid build (True
    when none runs: an export at a coarse level must not start a second build of it)."""

    def __init__(
        self,
        stack: Stack,
        model: ViewModel,
        publish: Callable[[dict[str, Any]], None],
        send: Callable[[dict[str, Any]], None],
        current_window: Callable[[], tuple[float, float]],
        pyramid_wait: Callable[[float], bool],
    ) -> None:
        self.stack = stack
        self.model = model
        self._publish = publish
        self._send = send
        self._window = current_window
        self._pyramid_wait = pyramid_wait
        self._lock = threading.Lock()
        self._job: Job | None = None
        self._count = 0
        self._closed = False
        self._merge = threading.Lock()
        self._last: dict[str, Any] = {}  # the last state published, and its job's number
        self._last_job = 0

    # --- requests -----------------------------------------------------------------------------

    def request(
        self,
        out: str | os.PathLike[str] | None,
        level: int = 0,
        format: str = "tiff",
        region: str = "roi",
        window: Any = None,
        overwrite: bool = False,
        **kw: Any,
    ) -> Request:
        """Check the arguments (cheap, no pixel read) and make a Request; raise on bad ones.

        ``region``: "roi" (the model's ROI) or "full"; ``z=``/``y=``/``x=`` in ``kw`` override
        it per axis. ``window``: None (the stack's values), True or "view" (the viewer's
        window, 8-bit), ``(low, high)`` or a preset name of ``ctstack.windows``. ``out`` None
        or "": the default name (see :meth:`default_out`). Meshes take ``threshold=`` (default:
        the model's threshold, else Otsu like ``ctstack mesh``) and ``invert=``.
        """
        fmt = str(format).lower()
        if fmt not in ALL_FORMATS:
            raise UnsupportedExport(f"unknown export format {format!r}; choose from {ALL_FORMATS}")
        if region not in REGIONS:
            raise InvalidArgument(f"region must be one of {REGIONS}, got {region!r}")
        if isinstance(level, bool):
            raise InvalidArgument(f"level must be an integer, got {level!r}")
        try:
            level = operator.index(level)
        except TypeError as exc:
            raise InvalidArgument(f"level must be an integer, got {level!r}") from exc
        axes: dict[str, Any] = {a: kw.pop(a, None) for a in "zyx"}
        if region == "roi":
            roi = self.model.roi
            axes = {a: axes[a] if axes[a] is not None else slice(*getattr(roi, a)) for a in "zyx"}
        threshold = None
        if fmt in MESH_FORMATS:
            if window is not None:
                raise UnsupportedExport("a mesh is made from the stack's values: give no window")
            threshold = kw.pop("threshold", None)
            threshold = self.model.threshold if threshold is None else float(threshold)
            extra = {"invert": bool(kw.pop("invert", False))}
        else:
            extra = {}
        allowed = MESH_OPTIONS if fmt in MESH_FORMATS else EXPORT_OPTIONS
        unknown = sorted(set(kw) - set(allowed))
        if unknown:
            raise InvalidArgument(
                f"{', '.join(unknown)}: not an option of a {fmt} export; it takes {allowed}"
            )
        extra.update(kw)
        path = Path(out).expanduser() if out else Path(self.default_out(fmt, region, level))
        path = Path(os.path.abspath(path))  # the kernel's working folder now, named in full
        if fmt in MESH_FORMATS and path.suffix.lower() != EXTENSIONS[fmt]:
            raise UnsupportedExport(f"{path}: a {fmt.upper()} mesh file ends in {EXTENSIONS[fmt]}")
        return Request(
            out=path,
            level=int(level),
            format=fmt,
            region=axes,
            region_name=region,
            window=self._resolve_window(window),
            overwrite=bool(overwrite),
            threshold=threshold,
            options=extra,
        )

    def default_out(self, fmt: str, region: str, level: int) -> str:
        """``<stack name>_roi`` (or ``_full``, plus ``_level2`` above level 0) with the format's
        extension, relative to the kernel's working directory."""
        stem = output_name(self.stack.name, "tiff") or "stack"  # the name without its suffix
        tail = f"_{region}" + (f"_level{level}" if level else "")
        return output_name(stem + tail, fmt)

    def _resolve_window(self, window: Any) -> tuple[float, float] | None:
        if window is None or window is False:
            return None
        if window is True or window == "view":
            lo, hi = self._window()
            return (float(lo), float(hi))
        if isinstance(window, str):
            from ..batch import stack_window

            return stack_window(self.stack, window)
        try:
            lo, hi = (float(v) for v in window)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"window is None, True ('view'), (low, high) or a preset name, got {window!r}"
            ) from exc
        return (lo, hi)

    # --- plan ---------------------------------------------------------------------------------

    def plan(self, req: Request) -> dict[str, Any]:
        """What ``req`` would write, as the panel shows it (no pixel read); raises what the
        export would raise up front (bad level or region, output exists, ...)."""
        if req.mesh:
            shapes = level_shapes(self.stack)
            if not 0 <= req.level < len(shapes):
                raise InvalidArgument(
                    f"level {req.level} does not exist; this stack has levels 0..{len(shapes) - 1}"
                )
            region = make_region(
                self.stack, level=req.level, level_shape=shapes[req.level], **req.region
            )
            if min(region.shape) < 2:
                raise UnsupportedExport(
                    f"a mesh needs at least 2 voxels along each axis; the region is "
                    f"{' x '.join(map(str, region.shape))} at level {req.level}"
                )
            check_target(req.out, req.overwrite, self.stack, req.format)
            how = "Otsu (automatic)" if req.threshold is None else f"{req.threshold:g}"
            shape = " x ".join(map(str, region.shape))
            return {
                "out": str(Path(os.path.abspath(req.out))),
                "format": req.format,
                "level": req.level,
                "region": region.describe(),
                "shape": list(region.shape),
                "dtype": "float32",
                "files": 1,
                "bytes": None,
                "threshold": req.threshold,
                "summary": (
                    f"surface of {shape} voxels at level {req.level}, threshold {how}: "
                    "1 file (its size depends on the surface)"
                ),
            }
        plan = plan_export(
            self.stack, req.out, level=req.level, format=req.format, window=req.window, **req.region
        )
        check_target(req.out, req.overwrite, self.stack, req.format)
        return {
            **plan.to_dict(),
            "out": str(Path(os.path.abspath(req.out))),
            "summary": plan.summary(),
        }

    def levels(self) -> list[list[int]]:
        """The level shapes an export can use (built, or those a build would make)."""
        return [list(s) for s in level_shapes(self.stack)]

    # --- the job ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        job = self._job
        return job is not None and not job.future.done()

    def start(self, req: Request) -> Future[ExportResult]:
        """Run ``req`` on a thread of its own; a second export while one runs fails its Future
        with ExportBusy (the running one goes on)."""
        fut: Future[ExportResult] = Future()
        fut.set_running_or_notify_cancel()
        with self._lock:
            if self._closed:
                fut.set_exception(ExportError("the viewer is closed"))
                return fut
            if self.running and self._job is not None:
                fut.set_exception(
                    ExportBusy(
                        f"an export to {self._job.request.out} is still running; wait for it "
                        "(its Future) or cancel it (v.cancel_export()) first"
                    )
                )
                return fut
            self._count += 1
            job = self._job = Job(self._count, req, fut)
        out = str(Path(os.path.abspath(req.out)))
        self._state(job, state="planning", message="checking the export", out=out)
        job.thread = threading.Thread(
            target=self._run, args=(job,), name=f"ctstack-export-{job.number}", daemon=True
        )
        job.thread.start()
        return fut

    def fail(self, error: BaseException, req: Request | None = None) -> Future[ExportResult]:
        """A Future failed with ``error`` (a request refused before any job), shown in the
        panel unless an export is running."""
        fut: Future[ExportResult] = Future()
        fut.set_running_or_notify_cancel()
        fut.set_exception(error)
        if not self.running and not self._closed:
            out = "" if req is None else str(Path(os.path.abspath(req.out)))
            self._publish({**IDLE, "state": "failed", "message": str(error), "out": out})
        return fut

    def cancel(self) -> bool:
        """Ask the running export to stop (it removes its partial output); False when none."""
        job = self._job
        if job is None or job.future.done():
            return False
        job.cancel.set()
        self._state(job, state="cancelling", message="cancelling…")
        return True

    def close(self, timeout: float = 0.0) -> None:
        """Cancel a running export (its Future fails with Cancelled once the partial output is
        removed); wait up to ``timeout`` seconds for that."""
        with self._lock:
            self._closed = True
            job = self._job
        if job is not None and not job.future.done():
            job.cancel.set()
            if timeout and job.thread is not None:
                job.thread.join(timeout)

    def _run(self, job: Job) -> None:
        req = job.request
        t0 = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            if done < total and now - last[0] < PROGRESS_S:
                return
            last[0] = now
            msg = f"{done} / {total} planes"
            self._state(job, state="running", done=int(done), total=int(total), message=msg)

        try:
            while not self._pyramid_wait(0.2):  # the viewer's own build: wait, cancellable
                self._state(job, message="waiting for the pyramid build")
                if job.cancel.is_set():
                    raise Cancelled("export cancelled before it started")
            if job.cancel.is_set():
                raise Cancelled("export cancelled before it started")
            self._state(job, state="running", message="starting")
            result = self._export(req, progress, job.cancel)
        except BaseException as exc:  # the Future carries it; the panel shows it
            cancelled = isinstance(exc, Cancelled) or job.cancel.is_set()
            if cancelled and not isinstance(exc, Cancelled):
                exc = Cancelled(f"export cancelled ({exc})")
            text = str(exc) or type(exc).__name__
            if not isinstance(exc, CTStackError):
                text = f"{type(exc).__name__}: {text}"
            done = "cancelled" if cancelled else "failed"
            tail = "; nothing was written" if cancelled else ""
            self._state(job, state=done, message=text + tail, seconds=time.perf_counter() - t0)
            job.future.set_exception(exc)
            return
        summary = result.summary()
        self._state(
            job,
            state="done",
            message=summary,
            summary=summary,
            result={
                "path": str(result.path),
                "files": len(result.files),
                "bytes": int(result.bytes),
                "human": human_bytes(result.bytes),
                "seconds": round(result.seconds, 3),
                "shape": list(result.shape),
                "format": result.format,
            },
        )
        job.future.set_result(result)

    def _export(
        self, req: Request, progress: Callable[[int, int], None], cancel: threading.Event
    ) -> ExportResult:
        """The engine call the CLI makes for this request (``export``, or ``mesh``)."""
        if req.mesh:
            from .._mesh import mesh

            threshold = req.threshold
            if threshold is None:
                from ..roi import suggest

                found = suggest(self.stack, cancel=cancel)
                if found.threshold is None:
                    raise UnsupportedExport(
                        f"no automatic threshold ({found.roi.reason}); set v.threshold first"
                    )
                threshold = found.threshold
            made = mesh(
                self.stack, req.out, threshold, level=req.level, overwrite=req.overwrite,
                progress=progress, cancel=cancel, **req.region, **req.options,
            )  # fmt: skip
            if made.result is None:  # not reached: a mesh written to a file has a result
                raise ExportError(f"{req.out}: the mesh was not written")
            return made.result
        from .._export import export

        return export(
            self.stack, req.out, level=req.level, format=req.format, overwrite=req.overwrite,
            window=req.window, progress=progress, cancel=cancel, **req.region, **req.options,
        )  # fmt: skip

    def _state(self, job: Job, **state: Any) -> None:
        """Publish the job's state (dropped once the viewer closed or a newer job started)."""
        if self._closed or self._job is not job:
            return
        if state.get("state") == "running" and job.cancel.is_set():
            state = {**state, "state": "cancelling"}  # progress after a cancel: still stopping
        with self._merge:
            base = {**IDLE, "job": job.number, "format": job.request.format}
            old = self._last if self._last_job == job.number else {}
            merged = {**base, **old, **state}
            self._last, self._last_job = merged, job.number
        self._publish(merged)  # outside the lock: an observer may run long

    # --- the panel's messages (kernel's main thread: plan only, never pixels) -----------------

    def on_plan(self, content: dict[str, Any], buffers: list[Any]) -> None:
        """``export_plan``: answer with the plan (or its error), the level shapes and formats."""
        reply: dict[str, Any] = {
            "type": "export_plan",
            "id": content.get("id"),
            "formats": list(ALL_FORMATS),
            "levels": self.levels(),
            "cwd": os.getcwd(),
            "threshold": self.model.threshold,
        }
        try:
            req = self.request(**_panel_args(content))
            reply["default_out"] = self.default_out(req.format, req.region_name, req.level)
            reply["plan"] = self.plan(req)
        except (CTStackError, ValueError, TypeError, OSError) as exc:
            reply["error"] = str(exc)
        self._send(reply)

    def on_export(self, content: dict[str, Any], buffers: list[Any]) -> None:
        """``export``: start it (the result and errors arrive in ``export_state``)."""
        req = None
        try:
            req = self.request(**_panel_args(content))
            self.plan(req)  # refuse up front what the plan refuses (shown at once)
        except (CTStackError, ValueError, TypeError, OSError) as exc:
            self.fail(exc, req)
            return
        self.start(req)

    def on_cancel(self, content: dict[str, Any], buffers: list[Any]) -> None:
        """``export_cancel``."""
        self.cancel()


def _panel_args(content: dict[str, Any]) -> dict[str, Any]:
    """The keywords of :meth:`Exporter.request` from a panel message (unknown keys dropped)."""
    level = content.get("level", 0)
    try:
        level = int(level)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"level must be an integer, got {level!r}") from exc
    fmt = str(content.get("format") or "tiff")
    return {
        "out": str(content.get("out") or "").strip() or None,
        "level": level,
        "format": fmt,
        "region": str(content.get("region") or "roi"),
        "window": True if content.get("window") and fmt.lower() not in MESH_FORMATS else None,
        "overwrite": bool(content.get("overwrite")),
    }


def wire(viewer: Viewer) -> Exporter:
    """The viewer's Exporter, its panel messages routed to it (``viewer._handlers``). Holds the
    viewer weakly: a running export does not keep a dropped viewer alive."""
    ref = weakref.ref(viewer)

    def publish(state: dict[str, Any]) -> None:
        v = ref()
        if v is not None and not v._closed:
            v.export_state = state

    def send(content: dict[str, Any]) -> None:
        v = ref()
        if v is not None and not v._closed:
            v.send(content)

    def window() -> tuple[float, float]:
        v = ref()
        if v is None:
            raise ExportError("the viewer is gone")
        lo, hi = v.window
        return (float(lo), float(hi))

    def pyramid_wait(timeout: float) -> bool:
        v = ref()
        return v is None or v.wait_for_pyramid(timeout)

    exporter = Exporter(viewer.stack, viewer.model, publish, send, window, pyramid_wait)
    viewer._handlers["export_plan"] = exporter.on_plan
    viewer._handlers["export"] = exporter.on_export
    viewer._handlers["export_cancel"] = exporter.on_cancel
    return exporter
