"""Read the header of one raster slice (TIFF, PNG, BMP, JPEG) and decode its pixels.

Headers are read without touching pixels so a whole series can be checked at open. The format
is sniffed from the file's first bytes, never trusted from its extension. Decoding returns a 2D
array in the engine's dtype: colour becomes luminance, palettes are expanded.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._dtypes import KERNEL_DTYPES, accepted
from ..errors import (
    ImageTooLarge,
    InvalidArgument,
    UnreadableSlice,
    UnsupportedDtype,
    UnsupportedFormat,
)

# A slice header claiming more pixels than this is refused before anything is allocated.
MAX_SLICE_PIXELS = 2**31

# One decoded plane may take at most min(4 GiB, RAM / 8) bytes unless this variable says otherwise.
MAX_SLICE_BYTES_ENV = "CTSTACK_MAX_SLICE_BYTES"
_PLANE_CAP = 4 * 2**30


def physical_memory() -> int | None:
    """Bytes of RAM, or None where the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def max_slice_bytes() -> int:
    """The most bytes one decoded plane may take: ``$CTSTACK_MAX_SLICE_BYTES`` when set, else
    min(4 GiB, RAM / 8)."""
    raw = os.environ.get(MAX_SLICE_BYTES_ENV, "").strip()
    if raw:
        try:
            value = int(float(raw))
        except ValueError:
            value = 0
        if value <= 0:
            raise InvalidArgument(
                f"{MAX_SLICE_BYTES_ENV}={raw!r} is not a positive number of bytes"
            )
        return value
    ram = physical_memory()
    return _PLANE_CAP if ram is None else max(1, min(_PLANE_CAP, ram // 8))


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**28 else f"{n / 2**20:.3g} MiB"


def check_plane(where: object, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse (ImageTooLarge) a plane of `shape` x `dtype` larger than ``max_slice_bytes``."""
    need = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    limit = max_slice_bytes()
    if need > limit:
        set_by = (
            f"set by {MAX_SLICE_BYTES_ENV}"
            if os.environ.get(MAX_SLICE_BYTES_ENV, "").strip()
            else f"min(4 GiB, RAM/8); raise it with {MAX_SLICE_BYTES_ENV}=<bytes>"
        )
        dims = " x ".join(str(int(n)) for n in reversed(shape))
        raise ImageTooLarge(
            f"{where}: one {dims} {np.dtype(dtype)} plane needs {_gib(need)}, more than the "
            f"{_gib(limit)} a slice may take ({set_by})"
        )


# ITU-R 601-2 luma weights in 16.16 fixed point, exactly as Pillow's convert("L").
_LUMA = (19595, 38470, 7471)


def map_dtype(dtype: np.dtype, where: str | os.PathLike[str] = "") -> np.dtype:
    """Map a file's pixel type to one the kernels take (``ctstack._dtypes.DTYPES``), or refuse it.

    bool becomes uint8, int8 int16 and float16 float32 (each value kept exactly); other types
    the kernels do not take are refused with UnsupportedDtype.
    """
    dtype = np.dtype(dtype).newbyteorder("=")
    if dtype in KERNEL_DTYPES:
        return dtype
    if dtype == np.bool_:
        return np.dtype("uint8")
    if dtype == np.int8:
        return np.dtype("int16")
    if dtype == np.float16:
        return np.dtype("float32")
    prefix = f"{where}: " if where else ""
    raise UnsupportedDtype(f"{prefix}pixel type {dtype} is not supported ({accepted()} are)")


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """What `path` is when it is not a regular file (after symlinks), else None.

    Only regular files are ever opened: reading a named pipe blocks forever and a device may
    never end.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as exc:  # ELOOP: a symbolic link loop
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"unreachable ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def sniff(path: Path) -> str | None:
    """Return 'tiff', 'png', 'bmp', 'jpeg', 'dicom' from the file's magic bytes, else None.

    Raises UnsupportedFormat for anything but a regular file (a FIFO is never read).
    """
    what = not_regular(path)
    if what is not None:
        raise UnsupportedFormat(f"{path}: {what}, not an image file; only regular files are read")
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:2] == b"BM":
        return "bmp"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[128:132] == b"DICM":
        return "dicom"
    return None


@dataclass(frozen=True)
class SliceHeader:
    """What one slice's header says: its (y, x) shape and the dtype it decodes to."""

    path: Path
    format: str  # tiff, png, bmp, jpeg
    shape: tuple[int, int]
    dtype: np.dtype
    colour: bool = False  # RGB(A) or a colour palette: decoded to luminance
    compressed: bool = False
    more_pages: bool = False  # a TIFF with further IFDs (maybe a multi-page volume)
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def bits(self) -> int:
        return self.dtype.itemsize * 8

    @property
    def stored_bits(self) -> int:
        """Bits per stored sample (a palette's indices, not its expanded colour table)."""
        return int(self.info.get("stored_bits") or self.bits)


def read_header(path: Path) -> SliceHeader:
    """Read one raster slice's header; raise UnreadableSlice/UnsupportedFormat/ImageTooLarge."""
    path = Path(path)
    try:
        kind = sniff(path)  # first: a FIFO's size is 0 too, but it is no empty file
        if path.stat().st_size == 0:
            raise UnreadableSlice(f"{path}: empty file (0 bytes)")
        if kind == "tiff":
            header = _tiff_header(path)
        elif kind in ("png", "bmp", "jpeg"):
            header = _pillow_header(path, kind)
        elif kind == "dicom":
            raise UnsupportedFormat(f"{path}: a DICOM file among raster slices")
        else:
            raise UnsupportedFormat(
                f"{path}: not a TIFF, PNG, BMP or JPEG image (unrecognised content)"
            )
    except PermissionError as exc:
        raise UnreadableSlice(f"{path}: permission denied ({exc.strerror or exc})") from exc
    except OSError as exc:
        raise UnreadableSlice(f"{path}: cannot read ({exc.strerror or exc})") from exc
    y, x = header.shape
    if y <= 0 or x <= 0:
        raise UnreadableSlice(f"{path}: header gives an empty image ({y} x {x})")
    if y * x > MAX_SLICE_PIXELS:
        raise ImageTooLarge(
            f"{path}: header claims {x} x {y} pixels, more than the {MAX_SLICE_PIXELS} a slice "
            "may have; the file is corrupt or not a CT slice"
        )
    check_plane(path, (y, x), header.dtype)
    return header


# --- TIFF: a minimal first-IFD parser (about 10x faster than opening a TiffFile) -------------

_TIFF_TYPES = {1: "B", 2: "B", 3: "H", 4: "I", 6: "b", 7: "B", 8: "h", 9: "i", 16: "Q", 17: "q"}
_TAGS = {256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 320, 322, 323, 324, 325, 339}
_SAMPLE_KIND = {1: "u", 2: "i", 3: "f"}


def _tiff_header(path: Path) -> SliceHeader:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
        bo = "<" if head[:2] == b"II" else ">"
        big = struct.unpack(bo + "H", head[2:4])[0] == 43
        if big:
            first = struct.unpack(bo + "Q", head[8:16])[0]
            cfmt, efmt, esize, inline = "Q", "HHQ", 20, 8
        else:
            first = struct.unpack(bo + "I", head[4:8])[0]
            cfmt, efmt, esize, inline = "H", "HHI", 12, 4
        if not 8 <= first < size:
            raise UnreadableSlice(f"{path}: TIFF header points outside the file (truncated?)")
        fh.seek(first)
        csize = struct.calcsize(cfmt)
        raw = fh.read(csize)
        if len(raw) < csize:
            raise UnreadableSlice(f"{path}: TIFF directory is truncated")
        count = struct.unpack(bo + cfmt, raw)[0]
        if not 0 < count < 4096:
            raise UnreadableSlice(f"{path}: TIFF directory is corrupt ({count} entries)")
        block = fh.read(count * esize + (8 if big else 4))
        if len(block) < count * esize + (8 if big else 4):
            raise UnreadableSlice(f"{path}: TIFF directory is truncated")
        tags: dict[int, tuple[Any, ...]] = {}
        for i in range(count):
            entry = block[i * esize : (i + 1) * esize]
            code, typ, n = struct.unpack(bo + efmt, entry[: 4 + (8 if big else 4)])
            if code not in _TAGS or typ not in _TIFF_TYPES:
                continue
            fmt = f"{bo}{n}{_TIFF_TYPES[typ]}"
            nbytes = struct.calcsize(fmt)
            payload = entry[esize - inline :]
            if nbytes > inline:
                offset = struct.unpack(bo + ("Q" if big else "I"), payload)[0]
                if offset + nbytes > size:
                    raise UnreadableSlice(f"{path}: TIFF tag {code} points outside the file")
                fh.seek(offset)
                payload = fh.read(nbytes)
            tags[code] = struct.unpack(fmt, payload[:nbytes])
        next_ifd = struct.unpack(bo + ("Q" if big else "I"), block[count * esize :])[0]

    def tag(code: int, default: int) -> int:
        return int(tags[code][0]) if tags.get(code) else default

    if 256 not in tags or 257 not in tags:
        raise UnreadableSlice(f"{path}: TIFF has no image width/length")
    x, y = tag(256, 0), tag(257, 0)
    bits, spp, compression = tag(258, 1), tag(277, 1), tag(259, 1)
    photometric, sample_format = tag(262, 1), tag(339, 1)
    if sample_format not in _SAMPLE_KIND or bits not in (1, 8, 16, 32, 64) or spp > 8:
        raise UnsupportedFormat(
            f"{path}: TIFF with {bits}-bit samples of format {sample_format} is not supported"
        )
    stored = np.dtype(bool) if bits == 1 else np.dtype(f"{_SAMPLE_KIND[sample_format]}{bits // 8}")
    if y * x > MAX_SLICE_PIXELS:  # refuse before computing anything from the size
        return SliceHeader(path, "tiff", (y, x), np.dtype("uint8"))
    colour = photometric in (2, 6) and spp >= 3
    stored_bits = bits
    palette = None
    if photometric == 3:
        palette = _palette_kind(tags.get(320), bits)
        if palette != "gray-ramp":  # a colour map is expanded to its 16-bit values
            stored = np.dtype("uint16")
        colour = palette == "colour"
    dtype = map_dtype(stored, path)
    _check_tiff_data(path, tags, size, (y, x), bits, spp, compression)
    return SliceHeader(
        path,
        "tiff",
        (y, x),
        dtype,
        colour=colour,
        compressed=compression != 1,
        more_pages=next_ifd != 0,
        info={
            "photometric": photometric,
            "samples": spp,
            "compression": compression,
            "stored_bits": stored_bits,
            "palette": palette,
        },
    )


def _palette_kind(colormap: tuple[Any, ...] | None, bits: int) -> str:
    """'gray-ramp' (R = G = B, strictly increasing: the stored indices are the image, as
    tifffile and ImageJ read it), 'gray' (R = G = B otherwise: expanded), or 'colour'."""
    n = 1 << bits if bits <= 16 else 0
    if not colormap or n == 0 or len(colormap) < 3 * n:
        return "colour"
    cmap = np.asarray(colormap[: 3 * n], dtype=np.int64).reshape(3, n)
    if not ((cmap[0] == cmap[1]).all() and (cmap[1] == cmap[2]).all()):
        return "colour"
    return "gray-ramp" if bool((np.diff(cmap[0]) > 0).all()) else "gray"


def _check_tiff_data(
    path: Path,
    tags: dict[int, tuple[Any, ...]],
    size: int,
    shape: tuple[int, int],
    bits: int,
    spp: int,
    compression: int,
) -> None:
    """The strips or tiles must cover the image and lie inside the file; uncompressed, their
    bytes must be the image's. A header claiming 46000 x 46000 pixels over a few bytes of
    strips is refused here, before any buffer is allocated."""
    y, x = shape
    tiled = 324 in tags or 322 in tags
    offsets = tags.get(324) or tags.get(273) or ()
    counts = tags.get(325) or tags.get(279) or ()
    planes = spp if tags.get(284, (1,))[0] == 2 else 1
    chunky = spp // planes  # samples per pixel within one strip or tile
    unit_bytes = 0  # uncompressed bytes of one tile
    if tiled:
        tw, tl = int(tags.get(322, (0,))[0]), int(tags.get(323, (0,))[0])
        if tw <= 0 or tl <= 0:
            raise UnreadableSlice(f"{path}: TIFF tiles of {tw} x {tl} pixels")
        need = -(-y // tl) * -(-x // tw) * planes
        unit_bytes = tl * -(-tw * bits * chunky // 8)
        what = "tiles"
    else:
        rows = int(tags.get(278, (y,))[0]) or y
        rows = min(rows, y)
        need = -(-y // rows) * planes
        what = "strips"
    if not offsets or not counts:
        if compression in (6, 7):  # old-style JPEG may point at its data another way
            return
        raise UnreadableSlice(f"{path}: TIFF lists no image data ({what})")
    pairs = list(zip(offsets, counts, strict=False))
    if len(pairs) < need:
        raise UnreadableSlice(
            f"{path}: TIFF {what} do not cover the image ({len(pairs)} listed, "
            f"{x} x {y} pixels need {need}); the file is corrupt or truncated"
        )
    pairs = pairs[:need]
    ends = [int(o) + int(c) for o, c in pairs]
    if max(ends) > size:  # a short file is a truncated slice
        raise UnreadableSlice(f"{path}: truncated ({size} bytes, the image data needs {max(ends)})")
    if compression == 1:
        total_needed = need * unit_bytes if tiled else y * -(-x * bits * chunky // 8) * planes
        have = sum(int(c) for _, c in pairs)
        if have < total_needed:
            raise UnreadableSlice(
                f"{path}: TIFF {what} hold {have} bytes, a {x} x {y} image needs "
                f"{total_needed}; the file is corrupt or truncated"
            )
    elif any(int(c) <= 0 for _, c in pairs):
        raise UnreadableSlice(f"{path}: TIFF has empty compressed {what}; the file is corrupt")


# --- Pillow formats ---------------------------------------------------------------------------

_PIL_DTYPES = {"I;16": "uint16", "I;16L": "uint16", "I;16B": "uint16", "I": "int32", "F": "float32"}


def _pillow_header(path: Path, kind: str) -> SliceHeader:
    from PIL import Image

    if kind == "png":  # check the IHDR size ourselves: Pillow may not even parse a huge one
        with open(path, "rb") as fh:
            ihdr = fh.read(24)
        if len(ihdr) == 24 and ihdr[12:16] == b"IHDR":
            x, y = struct.unpack(">II", ihdr[16:24])
            if x * y > MAX_SLICE_PIXELS:
                return SliceHeader(path, kind, (y, x), np.dtype("uint8"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                mode, (x, y) = im.mode, im.size
                palette = im.getpalette() if mode == "P" else None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{path}: header claims too many pixels ({exc})") from exc
    except (Image.UnidentifiedImageError, SyntaxError, ValueError, struct.error) as exc:
        raise UnreadableSlice(f"{path}: not a readable {kind.upper()} image ({exc})") from exc
    png16_colour = kind == "png" and mode in ("RGB", "RGBA") and _png_bit_depth(path) == 16
    dtype = np.dtype("uint16") if png16_colour else np.dtype(_PIL_DTYPES.get(mode, "uint8"))
    colour = mode in ("RGB", "RGBA", "CMYK", "YCbCr") or (
        mode == "P" and palette is not None and not _grey_palette(palette)
    )
    return SliceHeader(
        path,
        kind,
        (y, x),
        dtype,
        colour=colour,
        compressed=kind != "bmp",
        info={
            "mode": mode,
            "png16": png16_colour,
            "stored_bits": 16 if png16_colour else dtype.itemsize * 8,
        },
    )


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as fh:
        ihdr = fh.read(33)
    return ihdr[24] if len(ihdr) >= 25 else 8


def _grey_palette(palette: list[int]) -> bool:
    p = np.asarray(palette).reshape(-1, 3)
    return bool((p[:, 0] == p[:, 1]).all() and (p[:, 1] == p[:, 2]).all())


# --- decoding ---------------------------------------------------------------------------------


def luminance(rgb: np.ndarray) -> np.ndarray:
    """RGB(A) (..., y, x, c) to luminance with ITU-R 601-2 weights; alpha is dropped.

    Integers use Pillow's 16.16 fixed-point rounding (identical to convert("L") for 8-bit);
    floats use 0.299, 0.587, 0.114 in float32.
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if rgb.dtype.kind == "f":
        return (0.299 * r + 0.587 * g + 0.114 * b).astype(np.float32)
    wide = np.int64
    lum = (
        r.astype(wide) * _LUMA[0] + g.astype(wide) * _LUMA[1] + b.astype(wide) * _LUMA[2] + 0x8000
    ) >> 16
    return lum.astype(rgb.dtype)


def decode(header: SliceHeader, dtype: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
    """Decode a slice to a 2D array of `dtype` (the stack's); raise UnreadableSlice on failure."""
    path = header.path
    try:
        arr = _decode_tiff(header, out, dtype) if header.format == "tiff" else _decode_pil(header)
    except UnreadableSlice:
        raise
    except MemoryError as exc:
        raise ImageTooLarge(f"{path}: not enough memory to decode") from exc
    except Exception as exc:  # any decoder failure makes this a bad slice, never a crash
        raise UnreadableSlice(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from exc
    if arr.shape != header.shape:
        raise UnreadableSlice(f"{path}: decoded shape {arr.shape} differs from header")
    if out is not None:
        if arr is not out:
            np.copyto(out, arr, casting="unsafe")
        return out
    return arr.astype(dtype, copy=False)


def _decode_tiff(header: SliceHeader, out: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(header.path) as tif:
        page = tif.pages.first
        plain = (not header.colour) and page.dtype == dtype and page.shape == header.shape
        if plain and out is not None and out.dtype == dtype and out.shape == header.shape:
            # tifffile reshapes the array it is given in place and may fail before shaping
            # it back: it gets a view, so the caller's buffer keeps its shape whatever happens
            page.asarray(out=out.view())
            return out
        arr = page.asarray()
        palette = header.info.get("palette")
        if header.info.get("photometric") == 3 and palette != "gray-ramp":
            # a palette: index -> 16-bit RGB map (a gray ramp's indices are the image)
            cmap = np.asarray(page.colormap)
            arr = cmap.T[arr.astype(np.intp)]
            if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
                return arr[..., 0]
            return luminance(arr)
    if header.colour:
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
            arr = np.moveaxis(arr, 0, -1)  # planar RGB
        return luminance(arr)
    if arr.ndim == 3:  # extra samples (grey + alpha): keep the first
        arr = arr[..., 0] if arr.shape[-1] <= 8 else arr[0]
    return arr


def _decode_pil(header: SliceHeader) -> np.ndarray:
    from PIL import Image

    if header.info.get("png16"):
        import imagecodecs

        return luminance(imagecodecs.png_decode(header.path.read_bytes()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(header.path) as opened:
            opened.load()
            im: Image.Image = opened
            mode = im.mode
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                arr = np.asarray(im)
                return luminance(arr) if header.colour else arr[..., 0].copy()
            if mode in ("CMYK", "YCbCr"):
                im, mode = im.convert("RGB"), "RGB"
            arr = np.asarray(im)
    if mode in ("RGB", "RGBA"):
        return luminance(arr)
    if mode == "LA":
        return arr[..., 0].copy()
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    return arr
