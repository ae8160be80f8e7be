"""Housekeeping of cache locations: ownership marks, listing, sweeping and cleaning.

Only folders of the shapes ctstack makes that also carry its mark (a manifest, the temp marker
file or levels tagged "ctstack" in their zarr attributes) are ever deleted; everything else is
left alone, and nothing is deleted through a location that is a symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import time
from pathlib import Path
from typing import Any

from ..locations import LOCAL_DIRNAME, ROI_FILE, is_location_name, safe_name
from .keys import (
    CHECKSUMS,
    ENTRY_SUFFIX,
    LEVEL_TAG,
    MANIFEST,
    MANIFEST_KEYS,
    PARTIAL_MAX_AGE,
    PARTIAL_PREFIX,
    PYRAMID_VERSION,
    TEMP_MARKER,
    TMP_PREFIX,
    TRASH_PREFIX,
    parse_private,
    private_name,
)

STALE_FOREIGN_SECONDS = 7 * 24 * 3600  # a temp dir from another host is stale after a week


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


def _real_dir(path: Path) -> bool:
    """Whether ``path`` is a folder and not a symlink to one (lstat): deleting in it stays in it."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _json_dict(path: Path) -> dict[str, Any] | None:
    """The JSON object in the regular file ``path`` (not a symlink), else None."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_manifest(entry: Path) -> dict[str, Any] | None:
    """The manifest of an entry folder as a dict, or None when absent or unreadable."""
    try:
        data = json.loads((entry / MANIFEST).read_text())
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


def write_temp_marker(folder: Path) -> None:
    """Mark ``folder`` as a ctstack temp/trash folder (pid and host of the process)."""
    record = {"pid": os.getpid(), "host": safe_name(socket.gethostname()), "created": time.time()}
    (folder / TEMP_MARKER).write_text(json.dumps(record), encoding="utf-8")


def newest_mtime(folder: Path) -> float:
    """The newest mtime of ``folder`` and the entries directly in it (a resumable build's
    ledger and level folders change as it goes); 0 when it cannot be read."""
    try:
        newest = folder.stat().st_mtime
        with os.scandir(folder) as it:
            for child in it:
                with contextlib.suppress(OSError):
                    newest = max(newest, child.stat(follow_symlinks=False).st_mtime)
    except OSError:
        return 0.0
    return newest


def is_partial(path: Path) -> bool:
    """Whether ``path`` is a resumable build's folder of ours (``.partial-<key>``, marked)."""
    return path.name.startswith(PARTIAL_PREFIX) and _has_temp_marker(path) and _real_dir(path)


def _is_stale(path: Path) -> bool:
    """A marked temp/trash folder whose writer is gone: dead pid on this host, or old elsewhere.

    A resumable build (``.partial-<key>``) outlives its process by design: it is stale only
    when nothing in it changed for ``PARTIAL_MAX_AGE``.
    """
    if path.name.startswith(PARTIAL_PREFIX):
        return is_partial(path) and time.time() - newest_mtime(path) > PARTIAL_MAX_AGE
    parsed = parse_private(path.name)
    if parsed is None or not is_owned(path):
        return False
    pid, host = parsed
    if host == safe_name(socket.gethostname()):
        return not _pid_alive(pid)
    try:
        return time.time() - path.stat().st_mtime > STALE_FOREIGN_SECONDS
    except OSError:
        return False


def tree_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (links counted as themselves)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def remove_tree(path: Path, strict: bool = False) -> int:
    """Delete a cache folder safely: rename it to a private trash name first, then remove it.

    The rename is atomic, so a kill during the removal never leaves a half entry under a name
    ``load`` would look at. Only a folder ctstack made (``is_owned``) in a location that is no
    symlink is touched; the trash keeps its mark to the end, so a kill midway leaves a folder
    the next sweep still recognises. Returns the bytes freed (0 if nothing was removed).
    ``strict`` raises an OSError when the folder cannot be renamed or is still there after.
    """
    if os.path.islink(path.parent) or not is_owned(path):
        return 0
    trash = path
    if parse_private(path.name) is None:
        trash = path.with_name(private_name(TRASH_PREFIX))
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return 0
        except OSError:
            if strict:
                raise
            return 0
    if not (_has_manifest(trash) or _has_temp_marker(trash)):
        with contextlib.suppress(OSError):
            write_temp_marker(trash)  # only tagged levels marked it: they go first
    size = tree_bytes(trash)
    remove_marked_last(trash)
    if strict and os.path.lexists(trash):
        raise OSError(errno.EACCES, "some files could not be removed", str(trash))
    return size


def remove_marked_last(folder: Path) -> None:
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


def list_location(location: Path | str) -> list[dict[str, Any]]:
    """Describe every cache entry and temp folder of ctstack's in one location (``cache list``).

    Folders named like them that lack ctstack's mark are not ours and are not listed.
    """
    location = Path(location)
    out: list[dict[str, Any]] = []
    try:
        children = sorted(location.iterdir())
    except OSError:
        return out
    for child in children:
        if not is_owned(child):
            continue
        if child.name.endswith(ENTRY_SUFFIX):
            m = read_manifest(child) or {}
            version = m.get("version")
            complete = version == PYRAMID_VERSION and "levels" in m
            old = isinstance(version, int) and version < PYRAMID_VERSION
            out.append(
                {
                    "path": child,
                    "kind": "entry",
                    "name": m.get("name"),
                    "key": m.get("key"),
                    "source": m.get("source"),
                    "levels": [tuple(s) for s in m.get("levels", [])],
                    "dtype": m.get("dtype"),
                    "bytes": tree_bytes(child),
                    "created": m.get("created"),
                    "root": m.get("root"),
                    "complete": complete,
                    "version": version,
                    "old": old,  # an older cache format: never used, rebuilt on next use
                }
            )
        elif child.name.startswith(PARTIAL_PREFIX):
            marker = _json_dict(child / TEMP_MARKER) or {}
            out.append(
                {
                    "path": child,
                    "kind": "partial",  # a resumable build: kept until clean or PARTIAL_MAX_AGE
                    "name": None,
                    "key": child.name[len(PARTIAL_PREFIX) :],
                    "source": None,
                    "levels": [],
                    "dtype": None,
                    "bytes": tree_bytes(child),
                    "created": marker.get("created"),
                    "root": None,
                    "complete": False,
                    "pid": marker.get("pid"),
                    "stale": _is_stale(child),
                }
            )
        elif (parsed := parse_private(child.name)) is not None:
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
                    "source": None,
                    "levels": [],
                    "dtype": None,
                    "bytes": tree_bytes(child),
                    "created": mtime,
                    "root": None,
                    "complete": False,
                    "pid": parsed[0],
                    "stale": _is_stale(child),
                }
            )
    return out


def sweep_stale(location: Path | str, strict: bool = False) -> int:
    """Remove marked temp/trash folders left by dead writers (never a live one), and resumable
    builds untouched for ``PARTIAL_MAX_AGE``; returns the bytes freed.

    ``strict`` raises the first OSError after trying them all (else they are skipped)."""
    freed = 0
    if os.path.islink(location):
        return 0  # never delete through a symlink
    try:
        children = list(Path(location).iterdir())
    except OSError:
        return 0
    failed: list[OSError] = []
    for child in children:
        if _is_stale(child):
            try:
                freed += remove_tree(child, strict=strict)
            except OSError as exc:
                failed.append(exc)
    if failed:
        raise failed[0]
    return freed


def evict_stale(location: Path, name: str, source: str, keep: str) -> None:
    """Remove the entries of series ``name`` built from another source than ``source``.

    Entries of the same source (other ``max_size`` values) stay, and so does ``keep`` (an
    entry folder name); an entry of ours whose manifest is unreadable but whose folder name
    belongs to the series goes too.
    """
    for item in list_location(location):
        path = item["path"]
        if item["kind"] != "entry" or path.name == keep:
            continue
        stale = item["name"] == name and item["source"] != source
        orphan = item["name"] is None and path.name.startswith(safe_name(name) + "-")
        if stale or orphan:
            with contextlib.suppress(OSError):
                remove_tree(path)


def clean_location(location: Path | str, keep_roi: bool = True) -> int:
    """Remove all pyramid entries, resumable builds (``.partial-<key>``) and stale temp folders
    of one location; returns bytes freed.

    ``roi.json`` goes only with ``keep_roi=False``; other files are never touched, and nothing
    is deleted through a location that is a symbolic link. The location folder itself is removed
    when left empty, if it bears a location name and held something of ctstack's (or is
    ``.ctstack``): an empty folder of someone else's is never removed. What cannot be removed
    (a read-only cache, another user's) is skipped, the rest removed, and then one
    ``CacheError`` names the location and the reason.
    """
    from ..errors import CacheError

    location = Path(location)
    if os.path.islink(location):
        return 0
    items = list_location(location)
    roi = location / ROI_FILE
    ours = bool(items) or location.name == LOCAL_DIRNAME or (not keep_roi and roi.is_file())
    failed: list[OSError] = []
    freed = 0
    try:
        freed += sweep_stale(location, strict=True)
    except OSError as exc:
        failed.append(exc)
    for item in items:
        if item["kind"] in ("entry", "partial"):
            try:
                freed += remove_tree(item["path"], strict=True)
            except OSError as exc:
                failed.append(exc)
    if not keep_roi and roi.is_file():
        try:
            size = roi.stat().st_size
            roi.unlink()
            freed += size
        except OSError as exc:
            failed.append(exc)
    if ours and is_location_name(location.name):
        with contextlib.suppress(OSError):
            location.rmdir()  # only succeeds when empty
    if failed:
        first = failed[0]
        raise CacheError(
            f"{location}: cannot clean this cache ({first.strerror or first}); "
            f"{_mb(freed)} freed there, {len(failed)} item(s) left"
        ) from first
    return freed


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def verify_entry(entry: Path) -> list[str]:
    """What is wrong with an entry's chunk files, by their checksum sidecar (``cache verify``).

    Reads every chunk byte: this is the slow, thorough check that opening does not do. An
    empty list means every chunk file is there and matches what the build wrote; an entry
    of an older format without a sidecar gives one problem ("no checksums").
    """
    from ..errors import CacheError
    from .keys import file_digest

    sums = _json_dict(Path(entry) / CHECKSUMS)
    chunks = sums.get("chunks") if sums is not None else None
    algorithm = sums.get("algorithm") if sums is not None else None
    if not isinstance(algorithm, str) or not isinstance(chunks, dict):
        return [f"no checksums ({CHECKSUMS} missing or unreadable)"]
    problems = []
    for rel, want in chunks.items():
        try:
            got = file_digest(Path(entry) / rel, algorithm)
        except OSError as exc:
            problems.append(f"{rel}: cannot read ({exc.strerror or exc})")
            continue
        except CacheError as exc:
            return [str(exc)]
        if got != want:
            problems.append(f"{rel}: checksum differs (corrupted)")
    return problems
