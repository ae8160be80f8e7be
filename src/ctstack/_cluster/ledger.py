"""The resumable state of one cluster build: a lock (one builder per key) and a ledger.

Both live in the build's ``.partial-<key>`` folder. The *lock* is a file made with
``O_CREAT | O_EXCL`` that names the client holding it (pid, host, source fingerprint); a lock
of a dead process on this host is taken over, a live one (or another host's, within
``LOCK_FOREIGN_SECONDS``) makes the second builder fail with ``ClusterBusy``.

The *ledger* is a JSON-lines file: a header (the source fingerprint, the entry key and the slab
plan's signature), then one line per finished slab with the size and checksum of every file it
wrote. Only the client writes it, after a slab's task has returned. A rerun reuses a slab only
when every file it recorded is there with the recorded size; a ledger whose header differs
(another source, another plan) is discarded with the files it describes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CacheError

LOCK_FILE = "builder.lock"
LEDGER_FILE = "ledger.jsonl"
LOCK_FOREIGN_SECONDS = 24 * 3600  # another host's lock older than this is taken over
Files = dict[str, list[int]]  # file (relative to the entry) -> [size, checksum]


@dataclass(frozen=True)
class Finished:
    """A finished slab: the files it wrote and the bad slices ``(z, path, reason)`` it met."""

    files: Files
    bad: list[tuple[int, str, str]] = field(default_factory=list)


class ClusterBusy(CacheError):
    """Another cluster build of the same cache entry is running."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BuilderLock:
    """The one-builder-per-key lock of a partial folder; a context manager."""

    def __init__(self, folder: Path, source: str) -> None:
        self.path = folder / LOCK_FILE
        self.source = source
        self.held = False

    def _stale(self) -> bool:
        try:
            info = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return True  # unreadable: a lock torn by a kill between create and write
        if not isinstance(info, dict):
            return True
        if info.get("host") == socket.gethostname():
            return not _alive(int(info.get("pid", -1)))
        return time.time() - float(info.get("time", 0)) > LOCK_FOREIGN_SECONDS

    def acquire(self) -> None:
        for _attempt in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if not self._stale():
                    raise ClusterBusy(
                        f"{self.path.parent}: another cluster build of this pyramid is running "
                        f"({self.path.read_text(errors='replace').strip()}); wait for it, or "
                        f"remove {self.path} if that process is gone"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                continue
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "source": self.source,
                "time": time.time(),
            }
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
            self.held = True
            return
        raise ClusterBusy(f"{self.path}: could not take the builder lock")

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.held = False

    def __enter__(self) -> BuilderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Ledger:
    """Finished slabs of one build; ``header`` must match for earlier lines to count."""

    def __init__(self, folder: Path, header: dict[str, Any]) -> None:
        self.folder = folder
        self.path = folder / LEDGER_FILE
        self.header = header
        self.discarded = False  # set by open(): an earlier ledger of another build was dropped

    def open(self) -> dict[int, Finished]:
        """The slabs recorded by an earlier run of the same build (unverified). A ledger of
        another header is discarded (the caller clears the folder); a new one is started."""
        recorded: dict[int, Finished] = {}
        lines: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            lines = self.path.read_text().splitlines()
        if lines:
            try:
                same = json.loads(lines[0]) == {"header": self.header}
            except ValueError:
                same = False
            if same:
                for line in lines[1:]:
                    try:  # a line torn by a kill is the last one, and it does not count
                        item = json.loads(line)
                        files = {str(k): [int(v[0]), int(v[1])] for k, v in item["files"].items()}
                        bad = [(int(b[0]), str(b[1]), str(b[2])) for b in item.get("bad", [])]
                        recorded[int(item["slab"])] = Finished(files, bad)
                    except (ValueError, KeyError, TypeError, IndexError):
                        continue
            else:
                self.discarded = True
        if not lines or self.discarded:
            tmp = self.path.with_name(LEDGER_FILE + ".part")
            tmp.write_text(json.dumps({"header": self.header}) + "\n")
            os.replace(tmp, self.path)
        else:
            self._newline()
        return recorded

    def _newline(self) -> None:
        """End a line a kill may have torn, so the next record starts on its own line."""
        with open(self.path, "rb+") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def record(self, slab: int, done: Finished) -> None:
        """Append one finished slab (flushed and fsync-ed: a rerun may trust it)."""
        item = {"slab": slab, "files": done.files, "bad": [list(b) for b in done.bad]}
        line = json.dumps(item, separators=(",", ":")) + "\n"
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def intact(entry: Path, files: Files) -> bool:
    """Whether every recorded file is there with its recorded size (stats only)."""
    for rel, (size, _sum) in files.items():
        try:
            if os.stat(entry / rel).st_size != size:
                return False
        except OSError:
            return False
    return True
