"""``ctstack demo [PATH]``: napari on the phantom (or PATH) with the stack panel docked.

With no display the same session runs on a virtual one and saves a screenshot.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

DEMO_SHAPE = (256, 512, 512)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="open napari on a phantom (or PATH) with the stack panel", description=__doc__
    )
    parser.add_argument("path", nargs="?", help="stack to open (default: a generated phantom)")
    parser.add_argument(
        "--screenshot",
        metavar="FILE",
        help="save a screenshot here (default without a display: ctstack-demo.png)",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=256,
        help="pyramid levels halve until the largest axis is at most this (default 256)",
    )
    parser.set_defaults(func=run)


def _phantom_folder() -> Path:
    """The demo phantom in the user cache: written once (about 2 s), reused afterwards."""
    from ..napari._sample import sample_folder

    return sample_folder(DEMO_SHAPE)


def run(args: argparse.Namespace) -> int:
    headless = not os.environ.get("DISPLAY")
    screenshot = args.screenshot or ("ctstack-demo.png" if headless else None)
    path = Path(args.path) if args.path else _phantom_folder()
    from ..napari._session import virtual_display

    with virtual_display():
        return _session(path, args.max_size, screenshot, headless)


def _session(path: Path, max_size: int, screenshot: str | None, headless: bool) -> int:
    import napari

    from ..napari import open_with_panel, wait_for_build

    os.environ["CTSTACK_MAX_SIZE"] = str(max_size)
    viewer = napari.Viewer(title="ctstack demo", show=True)
    viewer.window.resize(1500, 850)
    t0 = time.perf_counter()
    panel, layer = open_with_panel(viewer, path, max_size=max_size)
    if layer is None:
        print(f"ctstack demo: could not open {path} (see the notification)")
        viewer.close()
        return 2
    wait_for_build(viewer)
    took = time.perf_counter() - t0
    layer = viewer.layers[layer.name]
    stack = layer.metadata["stack"]
    z, y, x = stack.shape
    vz, vy, vx = stack.voxel_size
    print(f"opened:  {stack.path}")
    print(
        f"series:  {stack.pattern or stack.name}, {len(stack.files)} files, "
        f"{z} x {y} x {x} {stack.dtype}"
    )
    print(f"voxel:   {vz:g} x {vy:g} x {vx:g} {stack.unit}")
    print(f"missing: {len(stack.missing)}, bad slices: {len(stack.bad_slices)}")
    shapes = layer.level_shapes if layer.multiscale else [stack.shape]
    print(f"pyramid: {panel.status.text()} (open + build {took:.1f} s)")
    print("levels:  " + ", ".join(" x ".join(str(int(n)) for n in s) for s in shapes))
    viewer.dims.set_current_step(0, z // 2)
    viewer.reset_view()
    if screenshot:
        viewer.screenshot(screenshot, canvas_only=False, flash=False)
        print(f"screenshot: {screenshot}")
    if headless:
        viewer.close()
        return 0
    napari.run()
    return 0
