"""Run one set of export (or mesh) settings over many stacks, each with its own ROI.

Qt-free: the napari batch widget and ``ctstack export A B C OUT`` are thin faces over
``run_batch``, which reports per-stack events to a callback. A failure on one stack is
recorded and the rest go on; the summary lists what was written where.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._export.writing import ExportResult, human_bytes
from .errors import Cancelled, CTStackError, InvalidArgument

if TYPE_CHECKING:
    from ._export import ExportPlan
    from .roi import ROI, Selection
    from .stack import Stack

    RoiChoice = str | ROI | Selection | dict[str, Any] | None
    """What ``resolve_selection`` takes: "saved", "auto", "full", an ROI, a Selection, a dict."""

MESH_FORMATS = ("stl", "ply", "obj")


@dataclass
class BatchEvent:
    """One thing that happened: ``start``, ``planned`` (an export's plan, once the stack is open
    and its ROI known), ``progress``, ``done``, ``failed`` or ``finished``."""

    kind: str
    index: int  # 0-based stack number (``count`` for ``finished``)
    count: int  # stacks in the batch
    path: Path | None = None
    done: int = 0  # slices done within this stack (progress events)
    total: int = 0
    message: str = ""
    result: ExportResult | None = None
    plan: ExportPlan | None = None


@dataclass
class BatchItem:
    """The outcome for one stack."""

    path: Path
    out: Path | None = None
    roi: ROI | None = None
    threshold: float | None = None  # the mesh threshold used (mesh batches)
    plan: ExportPlan | None = None  # what the export was planned to write (export batches)
    result: ExportResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass
class BatchSummary:
    """All outcomes, in order, and the wall time."""

    items: list[BatchItem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[BatchItem]:
        return [i for i in self.items if not i.ok]

    def text(self) -> str:
        """A few lines: one per stack (what went where, or why not), then the totals."""
        lines = []
        for item in self.items:
            r = item.result
            if r is not None:  # item.ok
                lines.append(
                    f"ok      {item.path} -> {r.path} ({len(r.files)} files, "
                    f"{human_bytes(r.bytes)}, {r.seconds:.1f} s)"
                )
            else:
                lines.append(f"FAILED  {item.path}: {item.error}")
        good = len(self.items) - len(self.failed)
        lines.append(
            f"{good} of {len(self.items)} stacks written, {len(self.failed)} failed, "
            f"{self.seconds:.1f} s"
        )
        return "\n".join(lines)


def _is_stack_dir(folder: Path) -> bool:
    from .discovery import list_candidates
    from .ngff import is_ome_zarr

    if is_ome_zarr(folder):
        return True
    try:
        raster, dicom = list_candidates(folder)
    except CTStackError:
        return True  # let opening it report the problem
    return bool(raster or dicom)


def find_stacks(paths: Iterable[str | Path]) -> list[Path]:
    """Expand each path: a stack (file or folder of slices) stays; a folder without slices
    stands for its sub-folders (hidden ones skipped). Missing paths stay, to fail visibly."""
    from .discovery import natural_key

    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not _is_stack_dir(p):
            subs = sorted(
                (d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")),
                key=lambda d: natural_key(d.name),
            )
            found.extend(subs or [p])
        else:
            found.append(p)
    return found


def output_name(path: Path, fmt: str) -> str:
    """``<stack name>`` for slice folders, plus ``.tif``, ``.ome.zarr`` or ``.<mesh>``."""
    from ._export import output_name as name_for

    return name_for(Path(path).name, fmt)


def stack_window(
    stack: Stack, window: tuple[float, float] | str | None
) -> tuple[float, float] | None:
    """One stack's export window: a preset name resolves through ``ctstack.windows`` (its
    percentiles come from this stack's own coarsest level), naming the stack when it cannot."""
    if not isinstance(window, str):
        return window
    from .windows import resolve_window

    try:
        return resolve_window(stack, window)[0]
    except InvalidArgument as exc:
        raise InvalidArgument(f"{stack.path}: {exc}") from exc


def run_batch(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    format: str = "tiff",
    roi: RoiChoice | Callable[[Stack], RoiChoice] = "saved",
    level: int = 0,
    window: tuple[float, float] | str | None = None,
    overwrite: bool = False,
    threshold: float | None = None,
    invert: bool = False,
    on_event: Callable[[BatchEvent], Any] | None = None,
    cancel: threading.Event | None = None,
    report: Callable[[str], Any] | None = None,
    **options: Any,
) -> BatchSummary:
    """Export every stack of ``paths`` (see ``find_stacks``) into ``out_dir``.

    ``roi``: "saved" (the stack's saved ROI, else the full volume), "auto" (``suggest``),
    "full", or a callable ``stack -> ROI`` (or ``-> Selection``). ``window``: ``(low, high)``
    or a preset name of ``ctstack.windows``, worked out per stack (a Hounsfield preset fails
    on a stack that is not HU, and only that stack). ``format``: an export format,
    or "stl"/"ply"/"obj" for meshes (threshold: the one given, else the saved or automatic
    one that came with the ROI). Other ``options`` go to ``ctstack.export``. ``report`` hears
    each stack's notes (``open_stack(report=)``). A set ``cancel`` stops the batch (Cancelled)
    after cleaning up.
    """
    from ._export import export, plan_export
    from ._mesh import mesh
    from .roi import resolve_selection
    from .stack import open_stack

    stacks = find_stacks(paths)
    out_dir = Path(out_dir)
    emit = on_event or (lambda event: None)
    summary = BatchSummary()
    t0 = time.perf_counter()
    used: set[str] = set()
    count = len(stacks)
    for index, path in enumerate(stacks):
        item = BatchItem(path)
        summary.items.append(item)
        emit(BatchEvent("start", index, count, path))

        def progress(done: int, total: int, _i: int = index, _p: Path = path) -> None:
            emit(BatchEvent("progress", _i, count, _p, done, total))

        try:
            name = output_name(path, format)
            stem, n = name, 2
            while name in used:
                name, n = f"{stem}_{n}", n + 1
            used.add(name)
            item.out = out_dir / name
            stack = open_stack(path, report=report)
            chosen = roi(stack) if callable(roi) else roi
            selection = resolve_selection(stack, chosen)
            item.roi = chosen_roi = selection.roi
            zs, ys, xs = (chosen_roi.slices[a] for a in "zyx")
            if format in MESH_FORMATS:
                thr = threshold if threshold is not None else selection.threshold
                if thr is None:
                    raise CTStackError(
                        f"{path}: no threshold given and none found by the ROI "
                        f"({chosen_roi.reason or chosen_roi.source})"
                    )
                item.threshold = thr
                result = mesh(
                    stack,
                    item.out,
                    thr,
                    level=level,
                    invert=invert,
                    overwrite=overwrite,
                    progress=progress,
                    cancel=cancel,
                    z=zs,
                    y=ys,
                    x=xs,
                ).result
                if result is None:  # not reached: a mesh written to a file has a result
                    raise CTStackError(f"{path}: the mesh was not written")
            else:
                win = stack_window(stack, window)
                item.plan = plan_export(
                    stack, item.out, zs, ys, xs, level=level, format=format, window=win
                )
                emit(
                    BatchEvent(
                        "planned", index, count, path, message=item.plan.summary(), plan=item.plan
                    )
                )
                result = export(
                    stack,
                    item.out,
                    level=level,
                    format=format,
                    overwrite=overwrite,
                    window=win,
                    progress=progress,
                    cancel=cancel,
                    z=zs,
                    y=ys,
                    x=xs,
                    **options,
                )
            item.result = result
            emit(BatchEvent("done", index, count, path, message=result.summary(), result=result))
        except Cancelled as exc:
            item.error = str(exc)
            emit(BatchEvent("failed", index, count, path, message=str(exc)))
            summary.seconds = time.perf_counter() - t0
            raise
        except Exception as exc:  # one broken stack must not stop the others
            item.error = (
                str(exc) if isinstance(exc, CTStackError) else f"{type(exc).__name__}: {exc}"
            )
            emit(BatchEvent("failed", index, count, path, message=item.error))
    summary.seconds = time.perf_counter() - t0
    emit(BatchEvent("finished", count, count, message=summary.text()))
    return summary
