"""One exception hierarchy for the engine; every message names the file and the problem."""

from __future__ import annotations


class CTStackError(Exception):
    """Base of every error ctstack raises on purpose."""


class Cancelled(CTStackError):
    """A long job stopped because its cancel event was set; nothing partial was left behind."""


# --- opening a stack -------------------------------------------------------------------------


class OpenError(CTStackError):
    """Base of the problems found while opening what the user pointed at."""


class PathNotFound(OpenError, FileNotFoundError):
    """The path given does not exist (or is a broken symlink)."""


class AccessDenied(OpenError, PermissionError):
    """The operating system refused to list a folder or read a file."""


class NoSliceSeries(OpenError):
    """A folder (or pattern) holds no series of image slices."""


class InconsistentSlices(OpenError):
    """The slices of a series disagree (no majority shape) so no volume can be made."""


class DuplicateSliceNumber(OpenError):
    """Two files of one series carry the same slice number (e.g. ``s_1.tif`` and ``s_01.tif``)."""


class UnreadableSlice(OpenError):
    """One file cannot be read or decoded; inside a series it becomes a bad slice instead."""


class AllSlicesUnreadable(UnreadableSlice):
    """Every file of a series failed to decode: refused rather than shown as a black volume."""


class UnsupportedFormat(OpenError):
    """A file is not in a format ctstack reads (or not the format its extension claims)."""


class UnsupportedDtype(UnsupportedFormat):
    """Pixels of a type the engine cannot hold (int64, uint64, complex, ...)."""


class MissingDecoder(OpenError):
    """A compressed file needs an optional package that is not installed; the message names it."""


class ImageTooLarge(OpenError):
    """A header claims dimensions too large to be real; refused before anything is allocated."""


class InvalidArgument(CTStackError, ValueError):
    """An argument (voxel size, unit, channel, pattern, ...) has an impossible value."""


# --- later stages (placeholders other modules extend) ---------------------------------------


class CacheError(CTStackError):
    """The pyramid cache could not be read or written."""


class ExportError(CTStackError):
    """An export could not be written; partial output has been removed."""


class OutputExists(ExportError, FileExistsError):
    """The output path exists and ``overwrite=True`` was not given."""


class NotEnoughSpace(ExportError):
    """The free space on the target disk is less than the export needs (checked up front)."""


class LevelNotAvailable(ExportError):
    """The pyramid level asked for does not exist for this stack."""


class UnsupportedExport(ExportError, ValueError):
    """The format cannot hold this data (dtype, size) or an argument is impossible."""


class CacheGone(CacheError):
    """A pyramid cache entry that was open vanished (cleaned, or replaced by a rebuild) and a
    chunk of it is missing: raised instead of reading the fill value. ``entry`` names it."""

    def __init__(self, message: str, entry: str | None = None) -> None:
        super().__init__(message)
        self.entry = entry
