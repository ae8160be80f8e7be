"""The pyramid cache: levels 1..n as zarr arrays, fingerprinted and committed by atomic rename.

Layout of a cache location (``<stack folder>/.ctstack/`` or a per-stack folder elsewhere)::

    <safe name>-<key[:16]>.pyramid/   one committed entry: arrays "1".."n" + manifest.json (last)
    .tmp-<pid>-<token>-<host>/        a writer's private build folder, renamed into place on commit
    .trash-<pid>-<token>-<host>/      an entry being deleted (renamed first, so no half entry shows)
    roi.json                          the user's ROIs: not cache, never removed by default

Only folders of those shapes that also carry ctstack's mark (a manifest, the temp marker file
or levels tagged "ctstack" in their zarr attributes) are ever deleted; everything else is left
alone. Nothing is written or deleted through a location that is a symbolic link (it may point
anywhere); entries and ROIs are still read through it, and new builds go to the user cache.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import queue
import re
import secrets
import shutil
import socket
import stat
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CacheError

PYRAMID_VERSION = 1
"""Bump when the pyramid arithmetic or the cache layout changes; part of every key."""

ENV_VAR = "CTSTACK_CACHE_DIR"
LOCAL_DIRNAME = ".ctstack"
ROI_FILE = "roi.json"
MANIFEST = "manifest.json"
ENTRY_SUFFIX = ".pyramid"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
TEMP_MARKER = ".ctstack-temp"  # in every temp folder until its manifest is written
MANIFEST_KEYS = ("key", "name", "levels", "version")  # a manifest of ours has all of these
LEVEL_TAG = "ctstack"  # key of the zarr attributes every level array of ours carries
NAMESPACE_RE = re.compile(r"[A-Za-z0-9._]{1,40}-[0-9a-f]{12}")  # what _namespace() makes
STALE_FOREIGN_SECONDS = 7 * 24 * 3600  # a temp dir from another host is stale after a week
ZARR_FORMAT = 3  # chunks are stored uncompressed: _chunks_intact relies on their fixed size
FSYNC = False  # fsync every chunk before commit: costs ~2 s per 600 MB here (see _chunks_intact)
WRITE_QUEUE = 1  # full slabs waiting for the writer thread, at most (bounds memory)

Shape3 = tuple[int, int, int]


class SourceMissing(CacheError):
    """A file the pixels depend on vanished between opening the stack and keying its cache."""


# --------------------------------------------------------------------------- keys and layout


def fingerprint(
    sources: Sequence[Path | str],
    shape: Sequence[int],
    dtype: Any,
    level_shapes: Sequence[Sequence[int]],
) -> str:
    """Return the sha256 hex key of what a pyramid is built from (names, sizes, mtimes, ...).

    Names are relative to the sources' common folder, so moving the whole folder keeps the key.
    """
    paths = [Path(p) for p in sources]
    base = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path()
    files = []
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError as exc:
            raise SourceMissing(f"{p}: source file vanished; reopen the stack") from exc
        except OSError as exc:
            raise CacheError(f"{p}: cannot stat source file ({exc.strerror or exc})") from exc
        files.append((p.relative_to(base).as_posix(), st.st_size, st.st_mtime_ns))
    files.sort()
    record = {
        "files": files,
        "shape": [int(n) for n in shape],
        "dtype": np.dtype(dtype).str,
        "levels": [[int(n) for n in s] for s in level_shapes],
        "version": PYRAMID_VERSION,
    }
    blob = json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


CHUNK_DEPTH = 16  # planes per chunk, at most
CHUNK_ROWS = 64  # y rows per chunk, at most
READ_BUDGET = 32 << 20  # bytes one z-plane or one xz-plane read may touch, at most


def _pow2_at_most(n: float, cap: int) -> int:
    """The largest power of two <= n, within 1..cap."""
    n = max(1, min(cap, int(n)))
    return 1 << (n.bit_length() - 1)


def chunk_shape(level_shape: Sequence[int], itemsize: int = 2) -> Shape3:
    """Chunks of (<=16 planes, <=64 rows, whole x rows), smaller when planes or levels are big.

    Measured with benchmarks/bench_cache_chunks.py on a 250 x 1024 x 1024 level: (16, 64, X)
    wrote fastest, read a z-plane and an xz-plane in ~10 ms warm and the 125 x 512 x 512 last
    level in ~50 ms. The caps keep any single z-plane or xz-plane read under READ_BUDGET bytes.
    """
    z, y, x = (max(1, int(n)) for n in level_shape)
    cz = _pow2_at_most(READ_BUDGET / (y * x * itemsize), CHUNK_DEPTH)
    cy = _pow2_at_most(READ_BUDGET / (z * x * itemsize), CHUNK_ROWS)
    return (min(cz, z), min(cy, y), x)


def _safe(text: str) -> str:
    """A file-name-safe, readable form of a series or folder name."""
    return re.sub(r"[^A-Za-z0-9._]+", "_", text).strip("._")[:40] or "stack"


def _namespace(root: Path) -> str:
    """Folder name for one stack inside a shared cache dir: readable name + hash of its path."""
    resolved = str(Path(root).resolve())
    return f"{_safe(Path(resolved).name)}-{hashlib.sha256(resolved.encode()).hexdigest()[:12]}"


def entry_dirname(name: str, key: str) -> str:
    """The committed entry's folder name for one stack name and key."""
    return f"{_safe(name)}-{key[:16]}{ENTRY_SUFFIX}"


def global_cache_dir() -> Path:
    """The shared cache dir: ``CTSTACK_CACHE_DIR`` if set, else the platformdirs user cache."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ctstack"))


def _probe_write(folder: Path) -> None:
    """Really write (and remove) a small file in ``folder``; raises OSError when that fails."""
    probe = folder / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, b"ctstack")
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            probe.unlink()


def is_writable(folder: Path) -> bool:
    """Whether ``folder`` (existing, or to be made in its parent) can take files.

    A real write, not ``os.access``: root passes every permission check, a read-only mount not.
    An absent folder is judged by a probe in its parent rather than made and removed again:
    two processes doing that at once could remove the folder under each other's probe.
    """
    folder = Path(folder)
    try:
        if folder.is_dir():
            _probe_write(folder)
        elif folder.exists():
            return False  # a plain file where the folder should be
        else:
            _probe_write(folder.parent)
        return True
    except OSError:
        return False


def _stack_folder(root: Path | str) -> Path:
    root = Path(root)
    return root.parent if root.is_file() else root


def user_cache_dir() -> Path:
    """The platformdirs user cache dir, whatever ``CTSTACK_CACHE_DIR`` says: the last resort."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("ctstack"))


_warned_links: set[str] = set()


def warn_link(link: Path, instead: Path) -> None:
    """Say once per process that ``link`` is a symlink ctstack will not write through."""
    if str(link) in _warned_links:
        return
    _warned_links.add(str(link))
    warnings.warn(
        f"{link} is a symbolic link: ctstack does not write or delete through it; "
        f"its pyramid cache and ROIs are written to {instead} instead",
        UserWarning,
        stacklevel=3,
    )


def _preferred_location(root: Path, cache_dir: Path | str | None) -> Path | None:
    """The explicitly chosen location (cache_dir, else $CTSTACK_CACHE_DIR), or None."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser() / _namespace(root)
    if os.environ.get(ENV_VAR):
        return global_cache_dir() / _namespace(root)
    return None


def _not_a_link(location: Path, root: Path) -> Path:
    """``location``, or the user cache dir's folder for ``root`` when it is a symlink."""
    if not os.path.islink(location):
        return location
    fallback = user_cache_dir() / _namespace(root)
    warn_link(location, fallback)
    return fallback


def resolve_location(root: Path | str, cache_dir: Path | str | None = None) -> Path:
    """Where a stack's cache lives: cache_dir > $CTSTACK_CACHE_DIR > root/.ctstack > user cache.

    A location that is a symbolic link is never written to; the user cache takes its place.
    """
    root = _stack_folder(root)
    preferred = _preferred_location(root, cache_dir)
    if preferred is not None:
        return _not_a_link(preferred, root)
    local = root / LOCAL_DIRNAME
    if os.path.islink(local):
        fallback = _not_a_link(global_cache_dir() / _namespace(root), root)
        warn_link(local, fallback)
        return fallback
    if is_writable(local):
        return local
    return _not_a_link(global_cache_dir() / _namespace(root), root)


# --------------------------------------------------------------------------- housekeeping


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OverflowError:
        return False
    return True


def _private_name(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{secrets.token_hex(6)}-{_safe(socket.gethostname())}"


def _parse_private(name: str) -> tuple[int, str] | None:
    """(pid, host) of a temp or trash folder name, or None if it is not one of ours."""
    for prefix in (TMP_PREFIX, TRASH_PREFIX):
        if name.startswith(prefix):
            parts = name[len(prefix) :].split("-", 2)
            if len(parts) == 3 and parts[0].isdigit() and re.fullmatch(r"[0-9a-f]{12}", parts[1]):
                return int(parts[0]), parts[2]
    return None


def _real_dir(path: Path) -> bool:
    """Whether ``path`` is a folder and not a symlink to one (lstat): deleting in it stays in it."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _json_dict(path: Path) -> dict | None:
    """The JSON object in the regular file ``path`` (not a symlink), else None."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _has_manifest(folder: Path) -> bool:
    """Whether ``folder`` holds a manifest written by ctstack (it has all of MANIFEST_KEYS)."""
    m = _json_dict(folder / MANIFEST)
    return m is not None and all(k in m for k in MANIFEST_KEYS)


def _has_temp_marker(folder: Path) -> bool:
    """Whether ``folder`` holds the marker file a CacheWriter writes into its temp folder."""
    m = _json_dict(folder / TEMP_MARKER)
    return m is not None and "pid" in m


def _has_tagged_level(folder: Path) -> bool:
    """Whether a level array in ``folder`` carries ctstack's tag (a corrupt entry's last mark)."""
    try:
        names = [e.name for e in os.scandir(folder) if e.name.isdigit()]
    except OSError:
        return False
    for name in names:
        meta = _json_dict(folder / name / "zarr.json")
        if meta is not None and isinstance((meta.get("attributes") or {}).get(LEVEL_TAG), dict):
            return True
    return False


def is_owned(folder: Path) -> bool:
    """Whether ctstack made ``folder`` (a real folder with its mark): only those are deleted."""
    folder = Path(folder)
    return _real_dir(folder) and (
        _has_manifest(folder) or _has_temp_marker(folder) or _has_tagged_level(folder)
    )


def _write_temp_marker(folder: Path) -> None:
    """Mark ``folder`` as a ctstack temp/trash folder (pid and host of the process)."""
    record = {"pid": os.getpid(), "host": _safe(socket.gethostname()), "created": time.time()}
    (folder / TEMP_MARKER).write_text(json.dumps(record), encoding="utf-8")


def _is_stale(path: Path) -> bool:
    """A marked temp/trash folder whose writer is gone: dead pid on this host, or old elsewhere."""
    parsed = _parse_private(path.name)
    if parsed is None or not is_owned(path):
        return False
    pid, host = parsed
    if host == _safe(socket.gethostname()):
        return not _pid_alive(pid)
    try:
        return time.time() - path.stat().st_mtime > STALE_FOREIGN_SECONDS
    except OSError:
        return False


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def _remove_tree(path: Path) -> int:
    """Delete a cache folder safely: rename it to a private trash name first, then remove it.

    The rename is atomic, so a kill during the removal never leaves a half entry under a name
    ``load`` would look at. Only a folder ctstack made (``is_owned``) in a location that is no
    symlink is touched; the trash keeps its mark to the end, so a kill midway leaves a folder
    the next sweep still recognises. Returns the bytes freed (0 if nothing was removed).
    """
    if os.path.islink(path.parent) or not is_owned(path):
        return 0
    trash = path
    if _parse_private(path.name) is None:
        trash = path.with_name(_private_name(TRASH_PREFIX))
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return 0
    if not (_has_manifest(trash) or _has_temp_marker(trash)):
        with contextlib.suppress(OSError):
            _write_temp_marker(trash)  # only tagged levels marked it: they go first
    size = _tree_bytes(trash)
    _remove_marked_last(trash)
    return size


def _remove_marked_last(folder: Path) -> None:
    """Remove ``folder`` and everything in it, its marker and manifest files last."""
    marks = (MANIFEST, TEMP_MARKER)
    try:
        children = list(os.scandir(folder))
    except OSError:
        return
    for child in children:
        if child.name in marks:
            continue
        if child.is_dir(follow_symlinks=False):
            shutil.rmtree(child.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(child.path)
    for name in marks:
        with contextlib.suppress(OSError):
            os.unlink(folder / name)
    with contextlib.suppress(OSError):
        folder.rmdir()


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            _fsync_path(Path(dirpath, f))
        _fsync_path(Path(dirpath), directory=True)


def _read_manifest(entry: Path) -> dict | None:
    try:
        data = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _open_levels(entry: Path, manifest: dict) -> list:
    """Open levels 1..n read-only from metadata only; raises if anything disagrees."""
    import zarr

    levels = []
    dtype = np.dtype(manifest["dtype"])
    for i, shape in enumerate(manifest["levels"], start=1):
        arr = zarr.open_array(
            store=str(entry / str(i)), mode="r", zarr_format=manifest.get("zarr_format", 3)
        )
        if tuple(arr.shape) != tuple(shape) or np.dtype(arr.dtype) != dtype:
            raise ValueError(f"level {i} is {arr.shape} {arr.dtype}, manifest says {shape}")
        if not _chunks_intact(entry / str(i), arr.shape, arr.chunks, dtype.itemsize):
            raise ValueError(f"level {i} has missing or truncated chunk files")
        levels.append(arr)
    return levels


def _chunks_intact(level_dir: Path, shape, chunks, itemsize: int) -> bool:
    """Every chunk file exists with its exact uncompressed size: a stat per file, no pixel read.

    This is what stands in for fsync-ing every chunk: after a power loss the committed rename
    may survive while delayed data blocks did not, which shows as short or missing files.
    """
    expected = int(np.prod([-(-n // c) for n, c in zip(shape, chunks, strict=True)]))
    size = int(np.prod(chunks)) * itemsize
    count = 0
    for dirpath, _dirs, files in os.walk(level_dir / "c"):
        for f in files:
            if os.stat(os.path.join(dirpath, f)).st_size != size:
                return False
            count += 1
    return count == expected


def list_location(location: Path | str) -> list[dict]:
    """Describe every cache entry and temp folder of ctstack's in one location (``cache list``).

    Folders named like them that lack ctstack's mark are not ours and are not listed.
    """
    location = Path(location)
    out: list[dict] = []
    try:
        children = sorted(location.iterdir())
    except OSError:
        return out
    for child in children:
        if not is_owned(child):
            continue
        if child.name.endswith(ENTRY_SUFFIX):
            m = _read_manifest(child) or {}
            complete = m.get("version") == PYRAMID_VERSION and "levels" in m
            out.append(
                {
                    "path": child,
                    "kind": "entry",
                    "name": m.get("name"),
                    "key": m.get("key"),
                    "levels": [tuple(s) for s in m.get("levels", [])],
                    "dtype": m.get("dtype"),
                    "bytes": _tree_bytes(child),
                    "created": m.get("created"),
                    "root": m.get("root"),
                    "complete": complete,
                }
            )
        elif (parsed := _parse_private(child.name)) is not None:
            try:
                mtime = child.stat().st_mtime
            except OSError:
                continue  # removed while we looked
            out.append(
                {
                    "path": child,
                    "kind": "temp" if child.name.startswith(TMP_PREFIX) else "trash",
                    "name": None,
                    "key": None,
                    "levels": [],
                    "dtype": None,
                    "bytes": _tree_bytes(child),
                    "created": mtime,
                    "root": None,
                    "complete": False,
                    "pid": parsed[0],
                    "stale": _is_stale(child),
                }
            )
    return out


def sweep_stale(location: Path | str) -> int:
    """Remove marked temp/trash folders left by dead writers (never a live one); bytes freed."""
    freed = 0
    if os.path.islink(location):
        return 0  # never delete through a symlink
    try:
        children = list(Path(location).iterdir())
    except OSError:
        return 0
    for child in children:
        if _is_stale(child):
            freed += _remove_tree(child)
    return freed


def is_location_name(name: str) -> bool:
    """Whether a folder name is one ctstack gives its locations (``.ctstack`` or a namespace)."""
    return name == LOCAL_DIRNAME or NAMESPACE_RE.fullmatch(name) is not None


def clean_location(location: Path | str, keep_roi: bool = True) -> int:
    """Remove all pyramid entries and stale temp folders of one location; returns bytes freed.

    ``roi.json`` goes only with ``keep_roi=False``; other files are never touched, and nothing
    is deleted through a location that is a symlink. The location folder itself is removed
    when left empty, if it bears a location name and held something of ctstack's (or is
    ``.ctstack``): an empty folder of someone else's is never removed.
    """
    location = Path(location)
    if os.path.islink(location):
        return 0
    items = list_location(location)
    roi = location / ROI_FILE
    ours = bool(items) or location.name == LOCAL_DIRNAME or (not keep_roi and roi.is_file())
    freed = sweep_stale(location)
    for item in items:
        if item["kind"] == "entry":
            freed += _remove_tree(item["path"])
    if not keep_roi and roi.is_file():
        freed += roi.stat().st_size
        roi.unlink()
    if ours and is_location_name(location.name):
        with contextlib.suppress(OSError):
            location.rmdir()  # only succeeds when empty
    return freed


# --------------------------------------------------------------------------- the cache


class PyramidCache:
    """The levels 1..n cache of one stack (folder ``root``, series ``name``)."""

    def __init__(self, root: Path | str, name: str, cache_dir: Path | str | None = None):
        self.root = _stack_folder(root)
        self.name = name
        self.location = resolve_location(self.root, cache_dir)
        self._read_locations = [self.location, *self._also_read(cache_dir)]

    def _also_read(self, cache_dir: Path | str | None) -> list[Path]:
        """Folders read but not written: a read-only stack's or a symlinked cache location."""
        preferred = _preferred_location(self.root, cache_dir)
        candidate = preferred if preferred is not None else self.root / LOCAL_DIRNAME
        return [candidate] if candidate != self.location and candidate.is_dir() else []

    def __repr__(self) -> str:
        return f"PyramidCache({str(self.root)!r}, {self.name!r}, location={str(self.location)!r})"

    def entry_path(self, key: str) -> Path:
        """Where the committed entry for ``key`` lives (whether or not it exists)."""
        return self.location / entry_dirname(self.name, key)

    def load(self, key: str) -> list | None:
        """The committed levels for ``key`` as read-only zarr arrays, or None; reads no pixel."""
        for location in self._read_locations:
            entry = location / entry_dirname(self.name, key)
            if not entry.is_dir():
                continue
            levels = self._open_entry(entry, key)
            if levels is not None:
                return levels
            if location == self.location:
                with contextlib.suppress(OSError):
                    _remove_tree(entry)  # corrupt and ours: make room for a rebuild
        return None

    def _open_entry(self, entry: Path, key: str) -> list | None:
        m = _read_manifest(entry)
        if not m or m.get("key") != key or m.get("version") != PYRAMID_VERSION:
            return None
        if m.get("name") != self.name:
            return None
        try:
            return _open_levels(entry, m)
        except Exception:  # any unreadable metadata means: not a usable cache
            return None

    def writer(self, key: str, level_shapes: Sequence[Sequence[int]], dtype: Any) -> CacheWriter:
        """Start building the entry for ``key`` in a private temp folder."""
        return CacheWriter(self, key, level_shapes, dtype)

    def entries(self) -> list[dict]:
        """Every entry and temp folder in this cache's location (all series names)."""
        return list_location(self.location)

    def clean(self, keep_roi: bool = True) -> int:
        """Remove this location's pyramid entries and stale temp folders; returns bytes freed."""
        return clean_location(self.location, keep_roi=keep_roi)


def _plain_layout(arr: Any, chunks: Shape3) -> bool:
    """Whether ``arr`` stores each chunk as its raw little-endian bytes under ``c/iz/iy/ix``.

    Then the writer writes the chunk files itself, which costs about half what zarr does;
    any other layout (a compressor, another key encoding) is written through zarr.
    """
    from zarr.codecs import BytesCodec

    meta = arr.metadata
    codecs = getattr(meta, "codecs", ())
    return (
        getattr(meta, "zarr_format", None) == 3
        and len(codecs) == 1
        and isinstance(codecs[0], BytesCodec)
        and (codecs[0].endian is None or codecs[0].endian.value == "little")
        and meta.encode_chunk_key((1, 2, 3)) == "c/1/2/3"
        and tuple(arr.chunks) == tuple(chunks)
        and chunks[2] == arr.shape[2]
    )


def _write_file(path: str, blocks: list[np.ndarray]) -> None:
    """Write ``blocks`` (C-contiguous arrays) one after the other as the file ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        views = [memoryview(b).cast("B") for b in blocks]
        total = sum(len(v) for v in views)
        done = os.writev(fd, views)
        if done < total:  # a short write: finish block by block (raises if the disk is full)
            data = b"".join(views)[done:]
            while data:
                data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


class CacheWriter:
    """Builds one entry from z-planes arriving in increasing z per level; commit or abort.

    Full chunk-depth slabs go to one background thread that writes their chunk files while
    the caller decodes the next planes; ``commit()`` waits for it and raises its error.
    Memory is bounded: one slab being filled per level plus at most WRITE_QUEUE + 1 in the
    writer's hands. Used as a context manager, leaving the block without ``commit()`` (an
    exception, a cancel) aborts.
    """

    def __init__(
        self,
        cache: PyramidCache,
        key: str,
        level_shapes: Sequence[Sequence[int]],
        dtype: Any,
    ):
        import zarr

        self.cache = cache
        self.key = key
        self.level_shapes: list[Shape3] = [tuple(int(n) for n in s) for s in level_shapes]  # type: ignore[misc]
        if not self.level_shapes or any(len(s) != 3 or min(s) < 1 for s in self.level_shapes):
            raise CacheError(f"bad level shapes for the cache: {level_shapes!r}")
        self.dtype = np.dtype(dtype)
        self.won: bool | None = None  # after commit: True if our build became the entry
        self.before_rename: Callable[[], None] | None = None  # test hook, called in commit()
        self._state = "open"
        location = cache.location
        self.tmp = location / _private_name(TMP_PREFIX)
        if os.path.islink(location):
            raise CacheError(f"{location} is a symbolic link; ctstack does not write through it")
        try:
            location.mkdir(parents=True, exist_ok=True)
            sweep_stale(location)
            self.tmp.mkdir()
            _write_temp_marker(self.tmp)
        except OSError as exc:
            raise CacheError(f"{location}: cannot create the pyramid cache ({exc})") from exc
        self._arrays = []
        self._buffers: list[np.ndarray | None] = []  # the slab being filled, per level
        self._free: list[list[np.ndarray]] = []  # slabs the writer thread has handed back
        self._direct: list[bool] = []  # chunk files written by us, else through zarr
        self._start = [0] * len(self.level_shapes)  # first z held in each buffer
        self._count = [0] * len(self.level_shapes)  # planes held in each buffer
        self._made_dirs: set[str] = set()
        self._queue: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None  # the writer thread's first failure
        self._stop = False
        try:
            for i, shape in enumerate(self.level_shapes, start=1):
                chunks = chunk_shape(shape, self.dtype.itemsize)
                arr = zarr.create_array(
                    store=str(self.tmp / str(i)),
                    shape=shape,
                    chunks=chunks,
                    dtype=self.dtype,
                    fill_value=0,
                    compressors=None,
                    filters=None,
                    zarr_format=ZARR_FORMAT,
                    config={"write_empty_chunks": True},
                    attributes={LEVEL_TAG: {"key": key, "level": i}},
                )
                self._arrays.append(arr)
                self._direct.append(_plain_layout(arr, chunks))
                self._free.append([])
                self._buffers.append(None)
        except BaseException:
            self.abort()
            raise

    def _slab(self, i: int) -> np.ndarray:
        """A slab buffer for level ``i`` that nobody else holds: handed back, or new.

        Chunk-padded in y (the padding rows are zero and never written) and little-endian, so
        each chunk file is the slab's rows as they lie in memory.
        """
        if self._free[i]:
            return self._free[i].pop()
        shape = self.level_shapes[i]
        cz, cy, _cx = self._arrays[i].chunks
        rows = -(-shape[1] // cy) * cy
        return np.zeros((cz, rows, shape[2]), self.dtype.newbyteorder("<"))

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state != "committed":
            self.abort()

    def write_plane(self, level: int, z: int, plane: np.ndarray) -> None:
        """Add plane ``z`` of ``level`` (1-based); planes must come in order z = 0, 1, 2, ..."""
        if self._state != "open":
            raise CacheError(f"cache writer is {self._state}; cannot write more planes")
        if not 1 <= level <= len(self.level_shapes):
            raise CacheError(f"level {level} is outside 1..{len(self.level_shapes)}")
        i = level - 1
        shape = self.level_shapes[i]
        expected = self._start[i] + self._count[i]
        if z != expected:
            raise CacheError(f"level {level}: got plane z={z}, expected z={expected}")
        plane = np.asarray(plane)
        if plane.shape != shape[1:] or plane.dtype != self.dtype:
            raise CacheError(
                f"level {level} plane is {plane.shape} {plane.dtype}, "
                f"expected {shape[1:]} {self.dtype}"
            )
        if self._error is not None:
            raise self._failure()
        buf = self._buffers[i]
        if buf is None:
            buf = self._buffers[i] = self._slab(i)
        buf[self._count[i], : shape[1]] = plane
        self._count[i] += 1
        if self._count[i] == len(buf) or z == shape[0] - 1:
            self._flush(i)

    def _flush(self, i: int) -> None:
        """Hand the level's filled slab to the writer thread (blocks while the queue is full)."""
        n, z0, buf = self._count[i], self._start[i], self._buffers[i]
        if not n or buf is None:
            return
        if n < len(buf):
            buf[n:] = 0  # an edge chunk is written whole, padded with the fill value
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._write_loop, name=f"ctstack-cache-{self.tmp.name}", daemon=True
            )
            self._thread.start()
        self._buffers[i] = None  # the writer thread owns it now
        self._queue.put((i, z0, n, buf))
        self._start[i], self._count[i] = z0 + n, 0

    def _write_loop(self) -> None:
        """The writer thread: write queued slabs until the None sentinel; keeps the first error."""
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                i, z0, n, buf = item
                if self._error is None and not self._stop:
                    try:
                        self._write_slab(i, z0, n, buf)
                    except BaseException as exc:
                        self._error = exc
                self._free[i].append(buf)
            finally:
                self._queue.task_done()

    def _write_slab(self, i: int, z0: int, n: int, buf: np.ndarray) -> None:
        arr = self._arrays[i]
        shape = self.level_shapes[i]
        if not self._direct[i]:
            arr[z0 : z0 + n] = buf[:n, : shape[1]]
            return
        cz, cy, _cx = arr.chunks
        level_dir = self.tmp / str(i + 1)
        iz = z0 // cz
        for iy in range(-(-shape[1] // cy)):
            path = os.path.join(level_dir, arr.metadata.encode_chunk_key((iz, iy, 0)))
            parent = os.path.dirname(path)
            if parent not in self._made_dirs:
                os.makedirs(parent, exist_ok=True)
                self._made_dirs.add(parent)
            # one contiguous block of rows per plane: written as they are, no copy
            _write_file(path, [buf[k, iy * cy : (iy + 1) * cy] for k in range(cz)])

    def drain(self) -> None:
        """Wait until every slab handed over so far is on disk; raises the writer's error."""
        self._queue.join()
        if self._error is not None:
            raise self._failure()

    def _failure(self) -> CacheError:
        exc = self._error
        where = self.cache.entry_path(self.key)
        err = CacheError(f"{where}: writing the pyramid cache failed ({exc})")
        err.__cause__ = exc
        return err

    def _stop_thread(self, discard: bool) -> None:
        """Let the writer thread finish (or, with ``discard``, skip) what is queued, then end it."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop = self._stop or discard
        self._queue.put(None)
        thread.join()

    def complete(self) -> bool:
        """Whether every plane of every level has been written."""
        return all(
            s + c == shape[0]
            for s, c, shape in zip(self._start, self._count, self.level_shapes, strict=True)
        )

    def commit(self, replace: bool = False) -> list:
        """Make the build the cache entry (atomic rename, manifest written last); return levels.

        If another process committed the same key first, ours is discarded and theirs returned,
        unless ``replace`` (a forced rebuild): then theirs is removed and ours takes its place.
        Older entries of the same series name are removed afterwards.
        """
        if self._state != "open":
            raise CacheError(f"cache writer is {self._state}; cannot commit")
        if not self.complete():
            missing = [
                f"level {i + 1} has {s + c}/{shape[0]} planes"
                for i, (s, c, shape) in enumerate(
                    zip(self._start, self._count, self.level_shapes, strict=True)
                )
                if s + c != shape[0]
            ]
            raise CacheError("cannot commit an incomplete pyramid: " + ", ".join(missing))
        try:
            for i in range(len(self._arrays)):
                self._flush(i)
            self._stop_thread(discard=False)
            if self._error is not None:
                raise self._failure()
            self._buffers, self._free = [], []
            self._write_manifest()
            if self.before_rename is not None:
                self.before_rename()
            levels = self._rename_into_place(replace)
        except BaseException:
            self.abort()
            raise
        self._remove_older()
        return levels

    def _write_manifest(self) -> None:
        manifest = {
            "key": self.key,
            "name": self.cache.name,
            "root": str(self.cache.root.resolve()),
            "levels": [list(s) for s in self.level_shapes],
            "chunks": [list(a.chunks) for a in self._arrays],
            "dtype": self.dtype.str,
            "version": PYRAMID_VERSION,
            "zarr_format": ZARR_FORMAT,
            "created": time.time(),
        }
        if FSYNC:
            _fsync_tree(self.tmp)
        part = self.tmp / (MANIFEST + ".part")
        with open(part, "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            if FSYNC:
                os.fsync(f.fileno())
        os.replace(part, self.tmp / MANIFEST)
        os.unlink(self.tmp / TEMP_MARKER)  # the manifest marks it now; entries hold no marker
        if FSYNC:
            _fsync_path(self.tmp, directory=True)

    def _rename_into_place(self, replace: bool) -> list:
        final = self.cache.entry_path(self.key)
        for _attempt in range(2):
            try:
                os.rename(self.tmp, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise CacheError(f"{final}: cannot commit the pyramid cache ({exc})") from exc
                if replace:
                    _remove_tree(final)
                    continue
                theirs = self.cache.load(self.key)  # removes theirs if it is corrupt
                if theirs is not None:
                    self.won = False
                    self.abort()
                    self._state = "committed"
                    return theirs
                continue
            self.won = True
            self._state = "committed"
            if FSYNC:
                with contextlib.suppress(OSError):
                    _fsync_path(final.parent, directory=True)
            levels = self.cache._open_entry(final, self.key)
            if levels is None:
                raise CacheError(f"{final}: committed entry does not open")
            return levels
        raise CacheError(f"{final}: another build keeps taking this name")

    def _remove_older(self) -> None:
        """Drop this series' entries with other keys, so the cache does not grow without bound."""
        keep = entry_dirname(self.cache.name, self.key)
        for item in list_location(self.cache.location):
            path = item["path"]
            if item["kind"] != "entry" or path.name == keep:
                continue
            same_name = item["name"] == self.cache.name
            orphan = item["name"] is None and path.name.startswith(_safe(self.cache.name) + "-")
            if same_name or orphan:
                with contextlib.suppress(OSError):
                    _remove_tree(path)

    def abort(self) -> None:
        """Remove the private temp folder; safe to call any number of times."""
        if self._state == "open":
            self._state = "aborted"
        self._stop_thread(discard=True)  # before the removal: it must not recreate folders
        self._buffers, self._free = [], []
        _remove_marked_last(self.tmp)  # a kill midway leaves a folder still marked as ours
