"""What every writer shares: refuse to overwrite, check free space, write under a temporary
name beside the target, rename into place at the end, and remove partial output on failure."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from ..errors import CTStackError, ExportError, NotEnoughSpace, OutputExists
from .guard import check_replaceable, write_marker

TMP_TAG = ".ctstack-tmp-"
OLD_TAG = ".ctstack-old-"
SPACE_MARGIN = 16 << 20  # bytes kept free beyond the estimate (file system overhead, metadata)


@dataclass
class ExportResult:
    """What an export wrote: where, which files, how many bytes, how long it took."""

    path: Path
    format: str
    files: list[Path]
    bytes: int
    seconds: float
    shape: tuple[int, ...] = ()
    dtype: str = ""
    level: int = 0
    region: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: ``wrote 740 tiff files (1.21 GiB) to out/ in 12.3 s``."""
        n = len(self.files)
        what = f"{n} {self.format} file{'s' if n != 1 else ''}"
        return f"wrote {what} ({human_bytes(self.bytes)}) to {self.path} in {self.seconds:.1f} s"

    __str__ = summary


def ome_zarr_result(
    out: Path, seconds: float, levels: int, version: str, compression: str, shard: bool, **more: Any
) -> ExportResult:
    """The result of an OME-Zarr export (local or on a cluster: ``more`` adds e.g. ``tasks``)."""
    extra = {"levels": levels, "ngff_version": version, "compression": compression}
    extra |= {"shard": shard, **more}
    return ExportResult(out, "ome-zarr", [out], tree_bytes(out), seconds, extra=extra)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def tree_bytes(path: Path) -> int:
    """Size of a file, or of every file below a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_space(folder: Path, need: int) -> None:
    """Raise NotEnoughSpace when ``need`` bytes (plus a margin) do not fit on folder's disk."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need + SPACE_MARGIN > free:
        raise NotEnoughSpace(
            f"{folder}: the export needs about {human_bytes(need)} but only "
            f"{human_bytes(free)} is free there; free some space or choose a smaller region, "
            "a coarser level or an 8-bit window"
        )


def remove(path: Path) -> None:
    """Remove a file or folder tree, ignoring what is already gone (or never could exist)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()


def describe_oserror(exc: OSError, out: Path, staged: Path | None = None) -> ExportError:
    """An ExportError naming the file and the cause (disk full, permission denied, ...).

    A file inside the staging name ``staged`` is named as it would be in ``out``."""
    where = _final_name(exc.filename, out, staged) if exc.filename else out
    text = " ".join(str(a) for a in exc.args)  # str(exc) would add the file name
    if exc.errno == errno.ENOSPC:
        why = "disk full"
    elif exc.errno is None and re.search(r"\d+ requested and \d+ written", text):
        why = "disk full (a write was cut short)"  # numpy's tofile, used by tifffile
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST) and where != out:
        why = "a parent of it is a file, not a folder"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied" if exc.errno != errno.EROFS else "read-only file system"
    else:
        why = exc.strerror or text
    return ExportError(f"{out}: {why} while writing {where}; the partial output was removed")


def _final_name(filename: Any, out: Path, staged: Path | None) -> Path:
    """``filename`` with the staging name ``staged`` (a prefix of it) replaced by ``out``."""
    name = os.fsdecode(filename)
    if staged is not None:
        tmp = os.fspath(staged)
        if name == tmp or name.startswith(tmp + os.sep):
            return Path(os.fspath(out) + name[len(tmp) :])
        if name.startswith(tmp):  # a side file of a staged file (the PLY writer's parts)
            return Path(os.fspath(out))
    return Path(name)


def named(exc: OSError, path: Path) -> OSError:
    """``exc`` carrying ``path`` as its file name when it has none (numpy's and tifffile's
    short-write errors name no file)."""
    if exc.filename is None:
        exc.filename = os.fspath(path)
    return exc


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", socket.gethostname())[:40] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0
    return True


class Staging:
    """A temporary sibling of ``out`` to write into, renamed onto ``out`` by ``commit()``.

    Used as a context manager: leaving it without commit (an error, a cancel) removes the
    temporary output; OSErrors become ExportError. The source is never touched. Entering it
    first sweeps temporaries that an earlier, killed export to the same ``out`` left behind.
    A staged folder carries the export marker from the start (``prov`` given).
    """

    def __init__(
        self,
        out: Path,
        overwrite: bool,
        folder: bool,
        fmt: str,
        prov: dict[str, Any] | None = None,
    ) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        self.folder = folder
        self.fmt = fmt
        self.prov = prov
        self.tmp = self._private(TMP_TAG)
        self.committed = False
        self.made: list[Path] = []  # parent folders this export created, innermost first
        self.t0 = time.perf_counter()

    def _private(self, tag: str) -> Path:
        """A hidden sibling of ``out`` named for this process and host (what the sweep reads)."""
        name = f".{self.out.name}{tag}{os.getpid()}-{secrets.token_hex(4)}-{_host()}"
        return self.out.parent / name

    def __enter__(self) -> Staging:
        try:
            self.made = [p for p in (self.out.parent, *self.out.parent.parents) if not p.exists()]
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.sweep()
            if self.folder:
                self.tmp.mkdir()
                write_marker(self.tmp, {**(self.prov or {}), "format": self.fmt})
        except OSError as exc:
            self._discard()
            raise describe_oserror(exc, self.out, self.tmp) from exc
        return self

    def sweep(self) -> int:
        """Remove this target's temporaries whose export process is gone; returns how many.

        Only names this module makes are considered (``.OUT.ctstack-tmp-PID-HEX-HOST``), from
        this host and a dead pid; an old copy (``ctstack-old-``) only once ``out`` is in place.
        """
        pattern = re.compile(
            re.escape(f".{self.out.name}")
            + r"(\.ctstack-(?:tmp|old)-)(\d+)-[0-9a-f]{8}-"
            + re.escape(_host())
            + r"$"
        )
        removed = 0
        try:
            names = os.listdir(self.out.parent)
        except OSError:
            return 0
        for name in names:
            m = pattern.match(name)
            if m is None or _pid_alive(int(m.group(2))):
                continue
            if m.group(1) == OLD_TAG and not os.path.lexists(self.out):
                continue  # the earlier export, moved aside: keep it while nothing replaced it
            remove(self.out.parent / name)
            removed += 1
        return removed

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if not self.committed:
            self._discard()
        if isinstance(exc, OSError) and not isinstance(exc, CTStackError):
            raise describe_oserror(exc, self.out, self.tmp) from exc
        return False

    def _discard(self) -> None:
        """Remove the temporary output and the folders made for it (while empty): a cancelled
        or failed export leaves nothing behind."""
        remove(self.tmp)
        for folder in self.made:
            try:
                folder.rmdir()
            except OSError:
                break

    def commit(self) -> None:
        """Move the finished output into place (replacing the old one when overwrite=True)."""
        trash = None
        if os.path.lexists(self.out):
            if not self.overwrite:
                raise OutputExists(f"{self.out}: appeared while exporting; left as it was")
            check_replaceable(self.out, self.fmt)
            trash = self._private(OLD_TAG)
            os.replace(self.out, trash)
        try:
            os.replace(self.tmp, self.out)
        except OSError:
            if trash is not None:
                os.replace(trash, self.out)
            raise
        self.committed = True
        if trash is not None:
            remove(trash)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
