"""One level's layout: its inner chunks (the read unit) and its files (the write unit).

See ``cache.layout`` for the picture and the API built on it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .keys import MAX_FILES_PER_LEVEL, MIN_FILE_BYTES, Shape3, chunk_shape

MAX_UINT64 = (1 << 64) - 1


@functools.lru_cache(maxsize=64)
def _morton(per: tuple[int, int, int]) -> tuple[tuple[int, int, int], ...]:
    """zarr's order of the inner chunks in a shard (its own function, so never out of step)."""
    from zarr.core.indexing import morton_order_iter

    return tuple((int(c[0]), int(c[1]), int(c[2])) for c in morton_order_iter(per))


@dataclass(frozen=True)
class LevelLayout:
    """Where one level's bytes go: inner chunks (read unit) and files (write unit).

    Files form a grid ``(iz, iy)``: plain chunk files ``(cz, cy, X)`` (``iy`` over the chunk
    rows), or shards of whole planes ``(z_depth, Y padded, X)`` (``iy`` always 0).
    """

    shape: Shape3
    itemsize: int
    chunks: Shape3  # the inner chunk: what a read fetches
    shard: Shape3  # one file: a shard of whole planes, or (== chunks) a plain chunk

    @property
    def sharded(self) -> bool:
        """Whether files are zarr shards (else plain chunk files)."""
        return self.shard != self.chunks

    @property
    def z_depth(self) -> int:
        """Planes per file: z blocks written by one task start at multiples of this."""
        return self.shard[0]

    @property
    def chunk_rows(self) -> int:
        """Inner chunk rows along y over the level (the last one padded)."""
        return -(-self.shape[1] // self.chunks[1])

    @property
    def per_shard(self) -> Shape3:
        """Inner chunks per file along (z, y, x)."""
        return (
            self.shard[0] // self.chunks[0],
            self.shard[1] // self.chunks[1],
            self.shard[2] // self.chunks[2],
        )

    @property
    def y_files(self) -> int:
        """Files per z-block (along y): the chunk rows for plain chunks, 1 for shards."""
        return -(-self.shape[1] // self.shard[1])

    @property
    def z_files(self) -> int:
        """z-blocks of the level."""
        return -(-self.shape[0] // self.z_depth)

    @property
    def chunk_bytes(self) -> int:
        cz, cy, cx = self.chunks
        return cz * cy * cx * self.itemsize

    def files(self) -> int:
        """Number of files of the level."""
        return self.z_files * self.y_files

    def file_key(self, iz: int, iy: int = 0) -> str:
        """The file's key inside the level folder (zarr's default v3 chunk key)."""
        return f"c/{iz}/{iy}/0"

    def file_keys(self) -> list[str]:
        """Every file's key, in (iz, iy) order (the order of ``sizes``)."""
        return [self.file_key(iz, iy) for iz in range(self.z_files) for iy in range(self.y_files)]

    def file_planes(self, iz: int) -> int:
        """Planes of the level held by the files of z-block ``iz`` (the last may hold fewer)."""
        return min(self.z_depth, self.shape[0] - iz * self.z_depth)

    def present(self, iz: int) -> int:
        """Inner chunk layers (along z) written in a file of z-block ``iz``: those overlapping
        the level (zarr leaves the others out of a partial last shard)."""
        return -(-self.file_planes(iz) // self.chunks[0])

    def file_size(self, iz: int, iy: int = 0) -> int:
        """The exact size of file ``(iz, iy)`` in bytes."""
        if not self.sharded:
            return self.chunk_bytes
        m, ny, nx = self.per_shard
        return self.present(iz) * ny * nx * self.chunk_bytes + m * ny * nx * 16 + 4

    def sizes(self) -> list[int]:
        """Every file's size, in (iz, iy) order (what the manifest records)."""
        return [self.file_size(iz, iy) for iz in range(self.z_files) for iy in range(self.y_files)]

    def order(self, iz: int) -> list[tuple[int, int, int]]:
        """The inner chunks written in a file of z-block ``iz``, in the order zarr writes them
        (coordinates inside the file)."""
        q = self.present(iz)
        return [c for c in _morton(self.per_shard) if c[0] < q]

    def index_bytes(self, iz: int) -> bytes:
        """The shard index of a file of z-block ``iz`` with its crc32c, as zarr encodes it."""
        return _index(self.per_shard, self.chunk_bytes, self.present(iz))


@functools.lru_cache(maxsize=256)
def _index(per: Shape3, chunk_bytes: int, present: int) -> bytes:
    import google_crc32c

    index = np.full((*per, 2), MAX_UINT64, dtype="<u8")
    offset = 0
    for c in _morton(per):
        if c[0] < present:
            index[c] = (offset, chunk_bytes)
            offset += chunk_bytes
    raw = index.tobytes()
    return raw + int(google_crc32c.value(raw)).to_bytes(4, "little")


def level_layout(level_shape: Sequence[int], itemsize: int) -> LevelLayout:
    """The layout of one level. Inner chunks are ``keys.chunk_shape`` (read-friendly). Files
    are those chunks when each holds at least ``MIN_FILE_BYTES`` (or spans whole planes) and
    they number at most ``MAX_FILES_PER_LEVEL``; else shards of whole planes, ``z_depth`` the
    chunk depth doubled until the level has at most ``MAX_FILES_PER_LEVEL`` files."""
    z, y, x = (max(1, int(n)) for n in level_shape)
    cz, cy, cx = chunk_shape((z, y, x), itemsize)
    chunks = (cz, cy, cx)
    rows = -(-y // cy)
    plain_files = -(-z // cz) * rows
    if plain_files <= MAX_FILES_PER_LEVEL and (
        cz * cy * cx * itemsize >= MIN_FILE_BYTES or rows == 1
    ):
        return LevelLayout((z, y, x), itemsize, chunks, chunks)
    depth = cz
    while -(-z // depth) > MAX_FILES_PER_LEVEL:
        depth *= 2
    return LevelLayout((z, y, x), itemsize, chunks, (depth, rows * cy, x))
