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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import CacheError
from ..locations import safe_name

PYRAMID_VERSION = 2
"""Bump when the pyramid arithmetic or the cache layout changes; part of every key.

2: the manifest records the source fingerprint (entries of other max_size values are kept).
"""

MANIFEST = "manifest.json"
ENTRY_SUFFIX = ".pyramid"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
TEMP_MARKER = ".ctstack-temp"  # in every temp folder until its manifest is written
MANIFEST_KEYS = ("key", "name", "levels", "version")  # a manifest of ours has all of these
LEVEL_TAG = "ctstack"  # key of the zarr attributes every level array of ours carries
ZARR_FORMAT: Literal[3] = 3  # uncompressed chunks: the store checks their exact size

CHUNK_DEPTH = 16  # planes per chunk, at most
CHUNK_ROWS = 64  # y rows per chunk, at most
READ_BUDGET = 32 << 20  # bytes one z-plane or one xz-plane read may touch, at most

Shape3 = tuple[int, int, int]


class SourceMissing(CacheError):
    """A file the pixels depend on vanished between opening the stack and keying its cache."""


def _digest(record: dict[str, Any]) -> str:
    blob = json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def source_fingerprint(sources: Sequence[Path | str], shape: Sequence[int], dtype: Any) -> str:
    """The sha256 hex digest of what the pixels come from: files (name, size, mtime), shape,
    dtype and the pyramid version. Names are relative to the sources' common folder, so
    moving the whole folder keeps it."""
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
