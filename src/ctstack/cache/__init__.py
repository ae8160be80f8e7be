"""The pyramid cache: levels 1..n as zarr arrays, fingerprinted and committed by atomic rename.

Layout of a cache location (``<stack folder>/.ctstack/`` or a per-stack folder elsewhere; which
one is decided by :mod:`ctstack.locations`)::

    <safe name>-<key[:16]>.pyramid/   one committed entry: arrays "1".."n" + manifest.json (last)
    .tmp-<pid>-<token>-<host>/        a writer's private build folder, renamed into place on commit
    .partial-<key>/                   a resumable (cluster) build, kept across runs until it is
                                      committed, cleaned, or untouched for PARTIAL_MAX_AGE
    .trash-<pid>-<token>-<host>/      an entry being deleted (renamed first, so no half entry shows)
    roi.json                          the user's ROIs: not cache, never removed by default

Entries of one stack built with different ``max_size`` values live side by side; an entry is
evicted only when the stack's sources changed (its source fingerprint is stale) or by
``cache clean``. Only folders of those shapes that also carry ctstack's mark are ever deleted,
and nothing is written or deleted through a location that is a symbolic link.

The modules: ``keys`` (fingerprints, key, chunk shape, names), ``layout`` (how a level's files
are laid out, and the API a cluster build writes entries with: ``grid``, ``files``,
``commit``), ``store`` (``PyramidCache``: finding and opening entries), ``writer``
(``CacheWriter``: building and committing one locally), ``housekeeping`` (ownership marks,
list, sweep, clean, verify).
"""

from __future__ import annotations

from ..errors import CacheError
from ..locations import (
    ENV_VAR,
    LOCAL_DIRNAME,
    NAMESPACE_RE,
    ROI_FILE,
    global_cache_dir,
    is_location_name,
    is_writable,
    user_cache_dir,
    warn_link,
)
from ..locations import cache_location as resolve_location
from ..locations import namespace as _namespace
from ..locations import safe_name as _safe
from .housekeeping import (
    STALE_FOREIGN_SECONDS,
    clean_location,
    is_owned,
    list_location,
    sweep_stale,
    verify_entry,
)
from .keys import (
    CHECKSUMS,
    CHUNK_DEPTH,
    CHUNK_ROWS,
    ENTRY_SUFFIX,
    LEVEL_TAG,
    MANIFEST,
    MANIFEST_KEYS,
    MAX_FILES_PER_LEVEL,
    PARTIAL_MAX_AGE,
    PARTIAL_PREFIX,
    PYRAMID_VERSION,
    READ_BUDGET,
    TEMP_MARKER,
    TMP_PREFIX,
    TRASH_PREFIX,
    ZARR_FORMAT,
    SourceMissing,
    chunk_shape,
    entry_dirname,
    entry_key,
    fingerprint,
    source_fingerprint,
)
from .layout import LevelLayout, level_layout
from .store import PyramidCache
from .writer import WRITE_QUEUE, CacheWriter

__all__ = [
    "CHECKSUMS",
    "CHUNK_DEPTH",
    "CHUNK_ROWS",
    "ENTRY_SUFFIX",
    "ENV_VAR",
    "LEVEL_TAG",
    "LOCAL_DIRNAME",
    "MANIFEST",
    "MANIFEST_KEYS",
    "MAX_FILES_PER_LEVEL",
    "NAMESPACE_RE",
    "PARTIAL_MAX_AGE",
    "PARTIAL_PREFIX",
    "PYRAMID_VERSION",
    "READ_BUDGET",
    "ROI_FILE",
    "STALE_FOREIGN_SECONDS",
    "TEMP_MARKER",
    "TMP_PREFIX",
    "TRASH_PREFIX",
    "WRITE_QUEUE",
    "ZARR_FORMAT",
    "CacheError",
    "CacheWriter",
    "LevelLayout",
    "PyramidCache",
    "SourceMissing",
    "_namespace",
    "_safe",
    "chunk_shape",
    "clean_location",
    "entry_dirname",
    "entry_key",
    "fingerprint",
    "global_cache_dir",
    "is_location_name",
    "is_owned",
    "is_writable",
    "level_layout",
    "list_location",
    "resolve_location",
    "source_fingerprint",
    "sweep_stale",
    "user_cache_dir",
    "verify_entry",
    "warn_link",
]
