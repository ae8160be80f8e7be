"""Where a stack's pyramid cache and its ``roi.json`` live: the one place that decides.

A stack folder's location is, in this order of preference:

1. ``cache_dir=`` (an argument), then ``$CTSTACK_CACHE_DIR``: ``<dir>/<namespace>/``;
2. ``<stack folder>/.ctstack/`` when a real write there succeeds;
3. the shared cache dir (``$CTSTACK_CACHE_DIR``, else the platformdirs user cache):
   ``<dir>/<namespace>/``.

``<namespace>`` is the folder's readable name plus a hash of its resolved path, so stacks never
collide in a shared dir. A location that is a symbolic link is never written or deleted
through (it may point anywhere); the user cache dir takes its place, and what is already
there is still read. The ROI file follows the same rule, beside the cache entries.

This module only computes paths and probes writability; it imports nothing else of ctstack's
but the errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import warnings
from pathlib import Path

from ._types import StrPath
from .errors import CTStackError

LOCAL_DIRNAME = ".ctstack"
"""The folder beside a stack that holds its cache entries and ``roi.json``."""
ROI_FILE = "roi.json"
ENV_VAR = "CTSTACK_CACHE_DIR"
NAMESPACE_RE = re.compile(r"[A-Za-z0-9._]{1,40}-[0-9a-f]{12}")  # what namespace() makes


def safe_name(text: str) -> str:
    """A file-name-safe, readable form of a series or folder name (at most 40 characters)."""
    return re.sub(r"[^A-Za-z0-9._]+", "_", text).strip("._")[:40] or "stack"


def stack_folder(root: Path | str) -> Path:
    """The folder a stack's locations belong to: ``root`` itself, or its parent for a file."""
    root = Path(root)
    return root.parent if root.is_file() else root


def namespace(root: Path | str) -> str:
    """Folder name for one stack inside a shared cache dir: readable name + hash of its path."""
    resolved = str(Path(root).resolve())
    return f"{safe_name(Path(resolved).name)}-{hashlib.sha256(resolved.encode()).hexdigest()[:12]}"


def is_location_name(name: str) -> bool:
    """Whether a folder name is one ctstack gives its locations (``.ctstack`` or a namespace)."""
    return name == LOCAL_DIRNAME or NAMESPACE_RE.fullmatch(name) is not None


def global_cache_dir() -> Path:
    """The shared cache dir: ``CTSTACK_CACHE_DIR`` if set, else the platformdirs user cache."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return user_cache_dir()


def user_cache_dir() -> Path:
    """The platformdirs user cache dir, whatever ``CTSTACK_CACHE_DIR`` says: the last resort."""
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


# --------------------------------------------------------------------------- the cache


def preferred_location(root: Path | str, cache_dir: StrPath | None = None) -> Path | None:
    """The explicitly chosen location (cache_dir, else $CTSTACK_CACHE_DIR), or None."""
    root = stack_folder(root)
    if cache_dir is not None:
        return Path(cache_dir).expanduser() / namespace(root)
    if os.environ.get(ENV_VAR):
        return global_cache_dir() / namespace(root)
    return None


def _not_a_link(location: Path, root: Path) -> Path:
    """``location``, or the user cache dir's folder for ``root`` when it is a symlink."""
    if not os.path.islink(location):
        return location
    fallback = user_cache_dir() / namespace(root)
    warn_link(location, fallback)
    return fallback


def cache_location(root: Path | str, cache_dir: StrPath | None = None) -> Path:
    """Where a stack's cache is written: cache_dir > $CTSTACK_CACHE_DIR > root/.ctstack > user.

    A location that is a symbolic link is never written to; the user cache takes its place.
    """
    root = stack_folder(root)
    preferred = preferred_location(root, cache_dir)
    if preferred is not None:
        return _not_a_link(preferred, root)
    local = root / LOCAL_DIRNAME
    if os.path.islink(local):
        fallback = _not_a_link(global_cache_dir() / namespace(root), root)
        warn_link(local, fallback)
        return fallback
    if is_writable(local):
        return local
    return _not_a_link(global_cache_dir() / namespace(root), root)


def read_locations(
    root: Path | str, cache_dir: StrPath | None = None, written: Path | None = None
) -> list[Path]:
    """Where a stack's cache entries are looked for: the written location first, then the one
    read but not written (a read-only stack's ``.ctstack``, a symlinked location) if it exists.

    ``written`` is ``cache_location(root, cache_dir)`` when the caller has it already.
    """
    root = stack_folder(root)
    if written is None:
        written = cache_location(root, cache_dir)
    preferred = preferred_location(root, cache_dir)
    candidate = preferred if preferred is not None else root / LOCAL_DIRNAME
    extra = [candidate] if candidate != written and candidate.is_dir() else []
    return [written, *extra]


def stack_locations(root: Path | str, cache_dir: StrPath | None = None) -> list[Path]:
    """Every place a stack's cache or ROI file may be, whether it exists or not.

    ``.ctstack`` beside the stack, its folder in the shared dir (``cache_dir``, else the
    global one) and, without ``cache_dir``, in the user cache dir, where read-only stacks
    and symlinked locations fall back to.
    """
    root = stack_folder(root)
    shared = Path(cache_dir).expanduser() if cache_dir is not None else global_cache_dir()
    out = [root / LOCAL_DIRNAME, shared / namespace(root)]
    if cache_dir is None:
        out.append(user_cache_dir() / namespace(root))
    return list(dict.fromkeys(out))


def shared_locations(cache_dir: StrPath | None = None) -> list[Path]:
    """Every stack's folder in a shared cache dir (only folders named as ctstack names them)."""
    shared = Path(cache_dir).expanduser() if cache_dir is not None else global_cache_dir()
    try:
        return sorted(p for p in shared.iterdir() if NAMESPACE_RE.fullmatch(p.name) and p.is_dir())
    except OSError:
        return []


# --------------------------------------------------------------------------- the ROI file


def roi_files(root: Path | str) -> tuple[Path, Path]:
    """(beside the stack, in the shared cache dir): the two places a ROI file may be."""
    root = Path(root)
    local = root / LOCAL_DIRNAME / ROI_FILE
    fallback = global_cache_dir() / namespace(root) / ROI_FILE
    return local, fallback


def roi_read_order(root: Path | str) -> tuple[Path, Path]:
    """Both ROI files, the one saves go to first: a new save must win over an older file."""
    local, fallback = roi_files(root)
    if os.path.islink(local.parent):  # never written through: saves are in the fallback
        return fallback, local
    if local.is_file() and fallback.is_file() and not is_writable(local.parent):
        return fallback, local  # a now read-only stack: saves went to the fallback
    return local, fallback


def roi_path(root: Path | str, for_writing: bool = False) -> Path:
    """Where a stack's ROI file is (or would be written): beside the stack when writable.

    A ``.ctstack`` that is a symbolic link is read but never written through.
    """
    if not for_writing:
        first, second = roi_read_order(root)
        return first if first.is_file() or not second.is_file() else second
    local, fallback = roi_files(root)
    if os.path.islink(local.parent):
        warn_link(local.parent, fallback.parent)
    elif is_writable(local.parent):
        return local
    if os.path.islink(fallback.parent):
        raise CTStackError(
            f"{fallback.parent} is a symbolic link; ctstack does not write through it"
        )
    return fallback
