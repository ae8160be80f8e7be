"""What a writer may touch: never a file the stack reads, the folders above them, the stack's
cache or ROI location; with ``overwrite`` only an earlier export of the same kind or a plain
file of the target format. Paths are compared by ``(st_dev, st_ino)``, so links and ``..``
cannot slip past a string comparison."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ExportError, OutputExists, UnsupportedExport

if TYPE_CHECKING:
    from ..stack import Stack

MARKER = ".ctstack-export.json"  # written into every exported folder (slices, OME-Zarr)
SLICE_FORMATS = ("tiff", "png", "bmp")
SLICE_SUFFIXES = (".tif", ".tiff", ".png", ".bmp")
MESH_FORMATS = ("stl", "ply", "obj")
FOLDER_FORMATS = (*SLICE_FORMATS, "ome-zarr")

Identity = tuple[int, int]


def identity(path: Path | str, follow: bool = True) -> Identity | None:
    """``(st_dev, st_ino)`` of a path, or None when it does not exist."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _spellings(path: Path) -> set[Path]:
    """The path as written (made absolute) and as resolved (links and ``..`` followed)."""
    return {Path(os.path.abspath(path)), Path(path).resolve()}


def _parents(path: Path) -> Iterable[Path]:
    """Every folder above the path, in both spellings."""
    for p in _spellings(path):
        yield from p.parents


def check_prefix(prefix: str | None) -> None:
    """A prefix is part of a file name: no folder separators, NUL, and not ``.`` or ``..``."""
    if prefix is None:
        return
    if not isinstance(prefix, str):
        raise UnsupportedExport(f"the file-name prefix must be text, got {prefix!r}")
    bad = [c for c in ("/", "\\", "\0") if c in prefix]
    if bad or prefix in (".", ".."):
        what = f"contains {bad[0]!r}" if bad else f"is {prefix!r}"
        raise UnsupportedExport(
            f"file-name prefix {prefix!r} {what}: a prefix names files inside OUT and may not "
            "point elsewhere (choose another OUT to write somewhere else)"
        )


def staged_file(folder: Path, name: str) -> Path:
    """``folder / name``, refusing any name that would leave the staging folder."""
    path = folder / name
    if not name or name in (".", "..") or os.path.basename(name) != name or path.parent != folder:
        raise ExportError(f"{name!r}: refusing to write a file outside {folder}")
    return path


class Protected:
    """The places one stack owns: its sources, the folders above them, its cache and ROIs."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.points: dict[Identity, Path] = {}  # never written to or replaced
        self.trees: dict[Identity, Path] = {}  # nothing written inside them either
        self.future_trees: list[Path] = []  # owned locations not made yet (by resolved path)
        sources = [Path(p) for p in stack.sources()] or [Path(stack.path)]
        for p in sources:
            self._add_point(p)
        folders = {p for s in [*sources, Path(stack.path), Path(stack.root)] for p in _parents(s)}
        for p in [Path(stack.path), Path(stack.root), *folders]:
            self._add_point(p)
        for p in self._owned_locations():
            self._add_tree(p)
        path = Path(stack.path)
        if path.is_dir() and Path(sources[0]).parent != path:
            self._add_tree(path)  # a store such as OME-Zarr: every file inside is read

    def _owned_locations(self) -> list[Path]:
        """Where this stack's pyramid cache and ROI file live, or would be made."""
        from .. import locations

        out = locations.stack_locations(self.stack.root)
        location = getattr(self.stack, "cache_location", None)
        if location is not None:
            out.append(Path(location))
        return out

    def _add_point(self, path: Path) -> None:
        for follow in (True, False):
            if (ident := identity(path, follow)) is not None:
                self.points.setdefault(ident, path)

    def _add_tree(self, path: Path) -> None:
        """An owned folder: neither it, nor a folder above it, nor anything inside is written."""
        self._add_point(path)
        for p in _parents(path):
            self._add_point(p)
        for follow in (True, False):
            if (ident := identity(path, follow)) is not None:
                self.trees.setdefault(ident, path)
        if not os.path.lexists(path):
            self.future_trees.append(Path(path).resolve())

    def check(self, out: Path) -> None:
        """Raise ExportError when writing or replacing ``out`` could touch what the stack owns."""
        for follow in (True, False):
            ident = identity(out, follow)
            if ident is not None and ident in self.points:
                raise ExportError(
                    f"{out}: refusing to write over the source stack ({self.points[ident]} is "
                    f"read by or belongs to {self.stack.path})"
                )
        inside = [self.trees.get(i) for p in _parents(out) if (i := identity(p)) is not None]
        resolved = Path(out).resolve()
        inside += [t for t in self.future_trees if resolved.is_relative_to(t)]
        hit = next((t for t in inside if t is not None), None)
        if hit is not None:
            raise ExportError(
                f"{out}: refusing to write inside {hit}, which belongs to the source stack "
                f"{self.stack.path}"
            )


def check_target(out: Path, overwrite: bool, stack: Stack, fmt: str) -> Path:
    """Refuse a target the stack owns, and an existing one unless it may be replaced."""
    out = Path(out).expanduser()
    Protected(stack).check(out)
    check_parent(out)
    if os.path.lexists(out):
        if not overwrite:
            raise OutputExists(
                f"{out}: already exists (pass overwrite=True / --overwrite to replace)"
            )
        check_replaceable(out, fmt)
    return out


def check_parent(out: Path) -> None:
    """Refuse an ``out`` below something that is not a folder (``file.txt/out``): the nearest
    existing ancestor must be a folder, since the missing ones are made there."""
    for parent in Path(out).parents:  # nearest first
        if not os.path.lexists(parent):
            continue
        if os.path.isdir(parent):
            return
        what = "a file, not a folder" if os.path.isfile(parent) else "not a folder"
        raise ExportError(f"{out}: cannot write there: its parent {parent} is {what}")


def check_replaceable(out: Path, fmt: str) -> None:
    """With overwrite: allow an earlier ctstack export of this kind or a plain file of ``fmt``."""
    what = _unreplaceable(out, fmt)
    if what is not None:
        how = "rm -r" if os.path.isdir(out) and not os.path.islink(out) else "rm"
        raise OutputExists(
            f"{out}: overwrite replaces only an earlier ctstack {fmt} export or a plain {fmt} "
            f"file, and this is {what}; remove it yourself ({how} '{out}') if it should go"
        )


def _unreplaceable(out: Path, fmt: str) -> str | None:
    """None when ``out`` may be replaced by a ``fmt`` export, else what it is instead."""
    st = os.lstat(out)
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        if fmt not in FOLDER_FORMATS:
            return "a folder"
        if fmt == "ome-zarr":
            return None if _ctstack_zarr(out) else "a folder that is no ctstack OME-Zarr export"
        return None if _slice_export(out) else "a folder that is no ctstack slice export"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device, pipe or socket)"
    if fmt in FOLDER_FORMATS:
        return "a file, not a folder"
    if not _file_of_format(out, fmt):
        return f"a file that is not {fmt.upper()}"
    return None


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The export marker of a folder, or None."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ours = isinstance(data, dict) and str(data.get("program", "")).startswith("ctstack")
    return data if ours else None


def write_marker(folder: Path, prov: dict[str, Any]) -> None:
    """Mark a staged export folder as ctstack's (what a later overwrite or sweep looks for)."""
    (folder / MARKER).write_text(json.dumps(prov, indent=1), encoding="utf-8")


def _slice_export(folder: Path) -> bool:
    """A folder a slice export made: its marker, or (older exports) slice files only, the
    first of them carrying ctstack's provenance."""
    if (m := read_marker(folder)) is not None:
        return m.get("format") in SLICE_FORMATS
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return False
    if not entries or any(
        not e.is_file(follow_symlinks=False) or not e.name.lower().endswith(SLICE_SUFFIXES)
        for e in entries
    ):
        return False
    return _has_provenance(Path(entries[0].path))


def _has_provenance(path: Path) -> bool:
    """Whether one exported TIFF or PNG slice carries ctstack's provenance record."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            from .provenance import PROVENANCE_TAG

            with tifffile.TiffFile(path) as tif:
                tag = tif.pages.first.tags.get(PROVENANCE_TAG)
                return tag is not None and '"ctstack' in str(tag.value)
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as im:
                return "ctstack" in getattr(im, "text", {})
    except Exception:  # an unreadable file is no export of ours
        return False
    return False


def _ctstack_zarr(folder: Path) -> bool:
    """An OME-Zarr folder ctstack wrote: its marker, or group attributes with our provenance."""
    if (m := read_marker(folder)) is not None:
        return m.get("format") == "ome-zarr"
    for name in (".zattrs", "zarr.json"):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        attrs = data.get("attributes", data) if name == "zarr.json" else data
        prov = attrs.get("ctstack") if isinstance(attrs, dict) else None
        if isinstance(prov, dict) and str(prov.get("program", "")).startswith("ctstack"):
            return True
    return False


def _file_of_format(path: Path, fmt: str) -> bool:
    """Whether a regular file's first bytes (and size, for binary STL) fit the format."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(84)
        size = path.stat().st_size
    except OSError:
        return False
    if fmt == "tiff-stack":
        return head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
    if fmt == "ply":
        return head.startswith(b"ply")
    if fmt == "stl":
        if head.lstrip().startswith(b"solid"):
            return True
        return len(head) == 84 and size == 84 + 50 * int.from_bytes(head[80:84], "little")
    if fmt == "obj":
        return path.suffix.lower() == ".obj" and b"\0" not in head
    return False
