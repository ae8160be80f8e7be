"""Committing a written entry folder: sizes checked, sidecar and manifest written, atomic rename.

One code path for every build: ``CacheWriter.commit`` (local) and a cluster build's client
(whose tasks wrote the files) both end in :func:`commit_entry`. The manifest is written last and
the folder renamed into place, so nothing half-written can become the cache.

Concurrent builders of one key: the first rename wins and the others adopt its entry. A forced
rebuild (``replace=True``) replaces only the entry that was committed when the build started
(``replaces``, its manifest's random ``build`` id); an entry committed while it built wins, so
no process ever returns levels of an entry that another one of the same race removes.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CacheError
from .grid import LevelLayout, level_layout
from .housekeeping import evict_stale, is_owned, read_manifest, remove_marked_last, remove_tree
from .keys import (
    CHECKSUM_ALGORITHM,
    CHECKSUMS,
    MANIFEST,
    PYRAMID_VERSION,
    TEMP_MARKER,
    TRASH_PREFIX,
    ZARR_FORMAT,
    entry_dirname,
    private_name,
)

if TYPE_CHECKING:
    import zarr

    from .store import PyramidCache

COMMIT_ATTEMPTS = 8  # renames tried before giving up (each failure means another commit won)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class Committed:
    """What a commit gave: the levels of the entry in place, whether ours won, where it is."""

    levels: list[zarr.Array[Any]]
    won: bool
    entry: Path


def entry_identity(entry: os.PathLike[str] | str) -> str | None:
    """Which commit an entry folder holds: its manifest's build id ("" when it has none or the
    manifest is unreadable), None when there is no folder."""
    path = os.fspath(entry)
    if not os.path.isdir(path):
        return None
    m = read_manifest(Path(path)) or {}
    build = m.get("build")
    return build if isinstance(build, str) else ""


def write_error(where: os.PathLike[str] | str, what: str, exc: BaseException) -> CacheError:
    """A CacheError for an OSError while writing the cache; a full disk says so plainly."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        err = CacheError(f"{where}: disk full while {what}; nothing was cached (free some space)")
    else:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        err = CacheError(f"{where}: {what} failed ({detail})")
    err.__cause__ = exc
    return err


def check_files(tmp: Path, layouts: Sequence[LevelLayout], checksums: dict[str, int]) -> None:
    """Every file of every level is written (in ``checksums``) with its exact size: one stat
    per file. Raises ``CacheError`` naming the first one that is not."""
    for i, layout in enumerate(layouts, start=1):
        for key, size in zip(layout.file_keys(), layout.sizes(), strict=True):
            rel = f"{i}/{key}"
            if rel not in checksums:
                raise CacheError(f"{tmp}: cannot commit an incomplete pyramid: {rel} not written")
            try:
                got = os.stat(tmp / rel).st_size
            except OSError as exc:
                raise write_error(tmp, f"checking {rel}", exc) from exc
            if got != size:
                raise CacheError(f"{tmp}: {rel} has {got} bytes, expected {size}")


def write_manifest(tmp: Path, manifest: dict[str, Any], checksums: dict[str, int]) -> None:
    """Write the checksum sidecar, then the manifest (the entry's last file), then drop the
    temp marker. Nothing is fsync-ed (that cost about 2 s per 600 MB): a torn entry is caught
    when it is opened, by the size of every file (``store._files_intact``)."""
    sums = {"algorithm": CHECKSUM_ALGORITHM, "chunks": dict(sorted(checksums.items()))}
    with open(tmp / CHECKSUMS, "w") as f:  # read only by `ctstack cache verify`
        json.dump(sums, f, separators=(",", ":"))
    part = tmp / (MANIFEST + ".part")
    with open(part, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(part, tmp / MANIFEST)
    os.unlink(tmp / TEMP_MARKER)  # the manifest marks it now; entries hold no marker


def commit_entry(
    cache: PyramidCache,
    tmp: Path | str,
    key: str,
    level_shapes: Sequence[Sequence[int]],
    dtype: Any,
    source: str | None,
    checksums: dict[str, int],
    extra: dict[str, Any] | None = None,
    replace: bool = False,
    replaces: str | None = None,
    drop: Sequence[str] = (),
    build_id: str | None = None,
    before_rename: Callable[[], None] | None = None,
) -> Committed:
    """Make the written folder ``tmp`` the cache entry for ``key`` (see the module docstring).

    ``source`` is the stack's source fingerprint (None: the key stands for it); ``checksums``
    ``{relative path: checksum}`` of every file (``write_block``'s results merged); ``extra``
    more manifest fields (the bad-slice record); ``replace``/``replaces`` a forced rebuild and
    the entry identity (``entry_identity``) seen when it started; ``drop`` names of files in
    ``tmp`` to remove first (a ledger, a lock). If another build won, ``tmp`` is removed and
    that entry's levels are returned with ``won=False``. On an error ``tmp`` is left to the
    caller (who removes it).
    """
    tmp = Path(tmp)
    dtype = np.dtype(dtype)
    shapes = [tuple(int(n) for n in s) for s in level_shapes]
    layouts = [level_layout(s, dtype.itemsize) for s in shapes]
    check_files(tmp, layouts, checksums)
    for name in drop:
        try:
            os.unlink(tmp / name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise write_error(tmp, f"removing {name}", exc) from exc
    manifest = {
        "key": key,
        "source": source or key,
        "name": cache.name,
        "root": str(cache.root.resolve()),
        "levels": [list(s) for s in shapes],
        "chunks": [list(lay.chunks) for lay in layouts],
        "shards": [list(lay.shard) if lay.sharded else None for lay in layouts],
        "files": [lay.sizes() for lay in layouts],
        "dtype": dtype.str,
        "version": PYRAMID_VERSION,
        "zarr_format": ZARR_FORMAT,
        "created": time.time(),
        "build": build_id or secrets.token_hex(8),
        **(extra or {}),
    }
    try:
        write_manifest(tmp, manifest, checksums)
    except OSError as exc:
        raise write_error(cache.location, "writing the cache manifest", exc) from exc
    if before_rename is not None:
        before_rename()
    done = _rename_into_place(cache, tmp, key, replace, replaces)
    # this series' entries of other sources go (those of other max_size values stay)
    evict_stale(cache.location, cache.name, source or key, entry_dirname(cache.name, key))
    return done


def _rename_into_place(
    cache: PyramidCache, tmp: Path, key: str, replace: bool, replaces: str | None
) -> Committed:
    """Rename the build into place. If an entry is there already: adopt it, unless it does
    not open (corrupt) or ``replace`` and it is the one committed before we started; then
    move it aside and try again."""
    final = cache.entry_path(key)
    for _attempt in range(COMMIT_ATTEMPTS):
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise write_error(final, "committing the pyramid cache", exc) from exc
            theirs_id = entry_identity(final)
            if theirs_id is None:
                continue  # removed meanwhile: try again
            theirs = cache._open_entry(final, key)
            if theirs is not None and not (replace and theirs_id == replaces):
                remove_marked_last(tmp)  # committed by another build (while we built): it wins
                return Committed(theirs, False, final)
            _move_aside(final, theirs_id)
            continue
        levels = cache._open_entry(final, key)
        if levels is None:
            raise CacheError(f"{final}: committed entry does not open")
        return Committed(levels, True, final)
    raise CacheError(f"{final}: another build keeps taking this name")


def _move_aside(final: Path, identity: str) -> None:
    """Remove the entry at ``final`` if it still is the commit ``identity``: renamed to a
    trash name first; a different entry that slipped in between is put back."""
    if not is_owned(final):
        raise CacheError(f"{final}: a folder that is not ctstack's holds this entry's name")
    trash = final.with_name(private_name(TRASH_PREFIX))
    try:
        os.rename(final, trash)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise write_error(final, "replacing the pyramid cache entry", exc) from exc
    if entry_identity(trash) != identity:  # another commit took the name meanwhile: it wins
        try:
            os.rename(trash, final)
            return
        except OSError:
            pass  # yet another one is in place: this duplicate goes
    remove_tree(trash)
