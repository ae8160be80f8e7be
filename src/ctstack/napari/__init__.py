"""napari plugin for ctstack: reader, sample data, stack panel (Qt widgets live in ``_qt``).

The Qt-free parts are importable without a display: :func:`read_stack` returns layer data,
:func:`set_3d_level` picks the level rendered in 3D, :func:`replace_with_levels` swaps a layer
for its multiscale twin while keeping the view.
"""

from ._layer import (
    contrast_limits,
    layer_kwargs,
    levels_for_3d,
    max_size_setting,
    replace_with_levels,
    set_3d_level,
    stack_of,
)
from ._reader import napari_get_reader, read_stack

__all__ = [
    "contrast_limits",
    "layer_kwargs",
    "levels_for_3d",
    "max_size_setting",
    "napari_get_reader",
    "read_stack",
    "replace_with_levels",
    "set_3d_level",
    "stack_of",
]
