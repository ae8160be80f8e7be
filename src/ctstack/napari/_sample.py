"""Sample data "CT phantom": a phantom written as a slice folder, then opened by the reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._reader import ReaderResult

SHAPE = (128, 256, 256)
VOXEL_UM = 10.0


def sample_folder(shape: tuple[int, int, int] = SHAPE) -> Path:
    """The phantom's slice folder in the user cache, written once and reused (its cache too)."""
    import platformdirs

    from ..sample import write_phantom_stack

    folder = (
        Path(platformdirs.user_cache_dir("ctstack"))
        / "samples"
        / ("phantom_{}x{}x{}".format(*shape))
    )
    stamp = folder / "sample.json"
    want = {"shape": list(shape), "voxel_um": VOXEL_UM, "version": 1}
    try:
        if json.loads(stamp.read_text()) == want:
            return folder
    except (OSError, ValueError):
        pass
    write_phantom_stack(folder, shape, "uint16", seed=0, voxel_size_um=VOXEL_UM)
    stamp.write_text(json.dumps(want))
    return folder


def make_phantom() -> ReaderResult:
    """npe2 sample data: the phantom folder read through the plugin's own reader."""
    from ._reader import read_for_napari

    return read_for_napari(str(sample_folder()))
