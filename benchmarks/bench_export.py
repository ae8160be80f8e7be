"""Export throughput (issue 6): a 400 x 1024 x 1024 region of the 500 x 2048 x 2048 uint16
phantom at level 0, to TIFF slices and to OME-Zarr, against the read floor of the same slices
(decoding and cropping them without writing); peak memory of the CLI; mesh time at the
coarsest level. ``--quick``: a 48 x 256 x 256 region of the 64 x 512 x 512 stack.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _harness import DATA, benchmark_stack, fmt_bytes, fmt_s, md_table, run_command, warm


def _region(quick: bool) -> dict[str, slice]:
    if quick:
        return {"z": slice(8, 56), "y": slice(128, 384), "x": slice(128, 384)}
    return {"z": slice(50, 450), "y": slice(512, 1536), "x": slice(512, 1536)}


def _read_floor(stack, region) -> float:
    """Seconds to decode and crop the region's slices with the exporter's own read-ahead."""
    from ctstack._export.planes import PlaneReader, iter_planes, resolve

    reg = resolve(stack, region["z"], region["y"], region["x"], 0)
    t0 = time.perf_counter()
    for _ in iter_planes(PlaneReader(stack, reg, None), reg.shape[0]):
        pass
    return time.perf_counter() - t0


def run(quick: bool) -> str:
    """Time read floor, TIFF and OME-Zarr exports, CLI peak RSS, and a coarsest-level mesh."""
    import ctstack
    from ctstack.roi import suggest_roi

    warnings.simplefilter("ignore")
    folder = benchmark_stack(quick)
    stack = ctstack.open_stack(folder)
    region = _region(quick)
    zs, ys, xs = region["z"], region["y"], region["x"]
    shape = (zs.stop - zs.start, ys.stop - ys.start, xs.stop - xs.start)
    nbytes = shape[0] * shape[1] * shape[2] * 2
    src_files = stack.files[zs.start : zs.stop]
    rows = []
    with tempfile.TemporaryDirectory(prefix="export-bench-", dir=DATA) as tmp:
        tmp = Path(tmp)
        warm(src_files)
        floor = _read_floor(stack, region)
        rows.append(
            [
                "read floor (decode + crop, no write)",
                fmt_s(floor),
                f"{nbytes / floor / 1e9:.2f}",
                "1.00",
                "",
                "",
            ]
        )
        for fmt in ("tiff", "ome-zarr"):
            warm(src_files)
            res = ctstack.export(stack, tmp / fmt, format=fmt, **region)
            rows.append(
                [
                    f"export {fmt} (in process)",
                    fmt_s(res.seconds),
                    f"{nbytes / res.seconds / 1e9:.2f}",
                    f"{res.seconds / floor:.2f}",
                    fmt_bytes(res.bytes),
                    "",
                ]
            )
            shutil.rmtree(tmp / fmt)
        for fmt in ("tiff", "ome-zarr"):
            warm(src_files)
            cmd = [
                sys.executable,
                "-m",
                "ctstack.cli",
                "export",
                str(folder),
                str(tmp / "c"),
                "--format",
                fmt,
                "--z",
                f"{zs.start}:{zs.stop}",
                "--y",
                f"{ys.start}:{ys.stop}",
                "--x",
                f"{xs.start}:{xs.stop}",
            ]
            cr = run_command(cmd)
            ok = "" if cr.returncode == 0 else f" (exit {cr.returncode}: {cr.stderr[-200:]})"
            rows.append(
                [
                    f"`ctstack export --format {fmt}` (fresh process){ok}",
                    fmt_s(cr.wall_s),
                    f"{nbytes / cr.wall_s / 1e9:.2f}",
                    f"{cr.wall_s / floor:.2f}",
                    "",
                    fmt_bytes(cr.peak_rss_bytes),
                ]
            )
            shutil.rmtree(tmp / "c", ignore_errors=True)
        t0 = time.perf_counter()
        levels = stack.build_pyramid()
        t_pyr = time.perf_counter() - t0
        k = len(levels) - 1
        t0 = time.perf_counter()
        roi = suggest_roi(stack, build=False)
        t_roi = time.perf_counter() - t0
        thr = roi.threshold if roi.threshold is not None else 10000.0
        mesh = ctstack.mesh(stack, tmp / "m.stl", thr, level=k)
    table = md_table(
        ["case", "time", "GB/s (region bytes)", "x read floor", "written", "peak RSS"], rows
    )
    lvl = " x ".join(map(str, levels[k].shape))
    return "\n".join(
        [
            "## Export (issue 6)",
            "",
            f"Source `{folder.name}` ({' x '.join(map(str, stack.shape))} uint16 TIFF slices), "
            f"region z {zs.start}:{zs.stop}, y {ys.start}:{ys.stop}, x {xs.start}:{xs.stop} "
            f"({fmt_bytes(nbytes)}) at level 0; page cache warmed before each case; one run each.",
            "",
            table,
            "",
            f"- Pyramid for the mesh: {fmt_s(t_pyr)} (0 when the cache was already valid).",
            f"- Auto-ROI (Otsu on level {k}, {lvl}): {fmt_s(t_roi)}; {roi.reason}",
            f"- Mesh of the whole volume at level {k} ({lvl}), threshold {thr:g}: "
            f"{fmt_s(mesh.seconds)}, {mesh.extra['vertices']} vertices, "
            f"{mesh.extra['faces']} faces, {fmt_bytes(mesh.bytes)} STL.",
        ]
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
