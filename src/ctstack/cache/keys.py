"""What names a cache entry: the source fingerprint, the entry key, chunk shapes, folder names.

An entry's key is made of two parts. The *source* fingerprint covers what the pixels come from
(every source file's name, size and mtime, the shape, the dtype, the pyramid version); the key
adds the level shapes, so pyramids of one stack with different ``max_size`` values are
separate entries that live side by side. An entry is stale, and is evicted, only when its
source fingerprint no longer matches the stack's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import CacheError
from ..locations import safe_name

PYRAMID_VERSION = 4
"""Bump when the pyramid arithmetic or the cache layout changes; part of every key.

2: the manifest records the source fingerprint (entries of other max_size values are kept).
3: the manifest records the bad slices (size, mtime_ns, ctime_ns) and a build id; chunk
   checksums in a sidecar file.
4: files of whole planes (zarr v3 shards of the read chunks, ``cache.layout``), at most
   MAX_FILES_PER_LEVEL per level; the manifest lists every file's size.
"""

MANIFEST = "manifest.json"
CHECKSUMS = "checksums.json"  # CRC-32 of every chunk file: read only by `ctstack cache verify`
ENTRY_SUFFIX = ".pyramid"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
PARTIAL_PREFIX = ".partial-"  # a resumable (cluster) build of one key: ".partial-<key>"
PARTIAL_MAX_AGE = 7 * 24 * 3600  # a partial build untouched this long is removed by any sweep
TEMP_MARKER = ".ctstack-temp"  # in every temp folder until its manifest is written
MANIFEST_KEYS = ("key", "name", "levels", "version")  # a manifest of ours has all of these
LEVEL_TAG = "ctstack"  # key of the zarr attributes every level array of ours carries
ZARR_FORMAT: Literal[3] = 3  # uncompressed chunks: the store checks their exact size

CHUNK_DEPTH = 16  # planes per chunk, at most
CHUNK_ROWS = 64  # y rows per chunk, at most
READ_BUDGET = 32 << 20  # bytes one z-plane or one xz-plane read may touch, at most
MAX_FILES_PER_LEVEL = 10_000  # files (shards) per level, at most: inode budgets, open time
MIN_FILE_BYTES = 1 << 20  # smaller chunks are gathered into shards of whole planes

Shape3 = tuple[int, int, int]


def _xxh3() -> Any:
    import importlib

    try:  # optional: not a dependency (yet)
        return importlib.import_module("xxhash")
    except ImportError:
        return None


_XXHASH = _xxh3()
CHECKSUM_ALGORITHM = "xxh3_64" if _XXHASH is not None else "crc32"
"""The chunk checksum a build writes: xxh3 (about 14 GB/s) when the ``xxhash`` package is
installed, else ``zlib.crc32`` (about 1.3 GB/s; it cost 10-15 % of a pyramid build)."""


def chunk_digest(views: Sequence[memoryview], algorithm: str = CHECKSUM_ALGORITHM) -> int:
    """The checksum of the bytes of ``views`` taken one after the other."""
    if algorithm == "xxh3_64" and _XXHASH is not None:
        h = _XXHASH.xxh3_64()
        for v in views:
            h.update(v)
        return int(h.intdigest())
    if algorithm == "crc32":
        crc = 0
        for v in views:
            crc = zlib.crc32(v, crc)
        return crc
    raise CacheError(f"checksum {algorithm!r} is not available here (install xxhash)")


def file_digest(path: Path | str, algorithm: str, block: int = 8 << 20) -> int:
    """The checksum of a whole file (as ``chunk_digest`` of its bytes), read in blocks."""
    if algorithm == "xxh3_64" and _XXHASH is not None:
        h = _XXHASH.xxh3_64()
        with open(path, "rb") as f:
            while data := f.read(block):
                h.update(data)
        return int(h.intdigest())
    if algorithm == "crc32":
        crc = 0
        with open(path, "rb") as f:
            while data := f.read(block):
                crc = zlib.crc32(data, crc)
        return crc
    raise CacheError(f"checksum {algorithm!r} is not available here (install xxhash)")


class SourceMissing(CacheError):
    """A file the pixels depend on vanished between opening the stack and keying its cache."""


def _digest(record: dict[str, Any]) -> str:
    blob = json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def source_base(sources: Sequence[Path | str]) -> Path:
    """The sources' common folder: names in fingerprints and manifests are relative to it."""
    paths = [Path(p) for p in sources]
    return Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path()


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def bad_record(sources: Sequence[Path | str], bad: Sequence[Path | str]) -> list[list[Any]]:
    """``[name, size, mtime_ns, ctime_ns]`` of each bad slice's file, for the manifest.

    The key covers name, size and mtime; a file that could not be read at build time can
    become readable with only its ctime changing (``chmod``), so for these few files the
    ctime is recorded too. A file that cannot be stat-ed is recorded with ``None`` values.
    """
    base = source_base(sources)
    out: list[list[Any]] = []
    for p in sorted({Path(b) for b in bad}):
        try:
            st = p.stat()
            out.append([_relative(p, base), st.st_size, st.st_mtime_ns, st.st_ctime_ns])
        except OSError:
            out.append([_relative(p, base), None, None, None])
    return out


def bad_record_holds(
    recorded: Any, sources: Sequence[Path | str], bad_now: Sequence[Path | str]
) -> bool:
    """Whether an entry's bad-slice record still holds: every recorded bad file is unchanged
    (size, mtime_ns, ctime_ns) and every file found bad at this open was bad at build time.
    Stats only: no pixel is decoded."""
    if not isinstance(recorded, list):
        return not bad_now
    base = source_base(sources)
    names = set()
    for item in recorded:
        if not (isinstance(item, list) and len(item) == 4 and isinstance(item[0], str)):
            return False
        names.add(item[0])
        try:
            st = (base / item[0]).stat()
            now: list[Any] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        except OSError:
            now = [None, None, None]
        if now != item[1:]:
            return False
    return all(_relative(Path(p), base) in names for p in bad_now)


def source_fingerprint(sources: Sequence[Path | str], shape: Sequence[int], dtype: Any) -> str:
    """The sha256 hex digest of what the pixels come from: files (name, size, mtime), shape,
    dtype and the pyramid version. Names are relative to the sources' common folder, so
    moving the whole folder keeps it."""
    paths = [Path(p) for p in sources]
    base = source_base(paths)
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
    return _digest(
        {
            "files": files,
            "shape": [int(n) for n in shape],
            "dtype": np.dtype(dtype).str,
            "version": PYRAMID_VERSION,
        }
    )


def entry_key(source: str, level_shapes: Sequence[Sequence[int]]) -> str:
    """The key of one entry: its source fingerprint and the shapes of levels 1..n."""
    return _digest({"source": source, "levels": [[int(n) for n in s] for s in level_shapes]})


def fingerprint(
    sources: Sequence[Path | str],
    shape: Sequence[int],
    dtype: Any,
    level_shapes: Sequence[Sequence[int]],
) -> str:
    """Return the sha256 hex key of what a pyramid is built from (names, sizes, mtimes, ...).

    ``entry_key(source_fingerprint(sources, shape, dtype), level_shapes)``.
    """
    return entry_key(source_fingerprint(sources, shape, dtype), level_shapes)


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


def entry_dirname(name: str, key: str) -> str:
    """The committed entry's folder name for one stack name and key."""
    return f"{safe_name(name)}-{key[:16]}{ENTRY_SUFFIX}"


def partial_path(location: Path | str, key: str) -> Path:
    """The folder of a resumable build of ``key`` in ``location``: ``.partial-<key>``."""
    return Path(location) / f"{PARTIAL_PREFIX}{key}"


def private_name(prefix: str) -> str:
    """A temp or trash folder name of this process: ``<prefix><pid>-<token>-<host>``."""
    return f"{prefix}{os.getpid()}-{secrets.token_hex(6)}-{safe_name(socket.gethostname())}"


def parse_private(name: str) -> tuple[int, str] | None:
    """(pid, host) of a temp or trash folder name, or None if it is not one of ours."""
    for prefix in (TMP_PREFIX, TRASH_PREFIX):
        if name.startswith(prefix):
            parts = name[len(prefix) :].split("-", 2)
            if len(parts) == 3 and parts[0].isdigit() and re.fullmatch(r"[0-9a-f]{12}", parts[1]):
                return int(parts[0]), parts[2]
    return None
