"""Building the level-of-detail pyramid (issue 4): ``ctstack pyramid`` (Rust and numpy) against
the read floor, dask, tensorstore and the reference desktop app's Pillow method, plus
reopening with a valid cache; wall time (in-process and whole command) and peak RSS.

Each case runs as its own process (``python benchmarks/bench_pyramid.py --case CASE --stack
DIR --out DIR``) so that ``run_command`` sees the whole command's wall time and peak RSS; the
worker prints its in-process time (imports done before the clock starts) as JSON. The
``rust``, ``numpy`` and ``reopen`` cases call the real CLI entry point (``ctstack.cli.main``,
what the ``ctstack`` console script runs) with ``pyramid STACK [--rebuild] --cache-dir OUT``;
``CTSTACK_NO_RUST=1`` selects the numpy fallback. The competitors are in
``_pyramid_baselines.py``. Cases run interleaved (A, B, C, A, B, C...), the input warmed right
before every run; every build's levels are checked against ctstack's Rust build.

Run: ``python benchmarks/bench_pyramid.py [--quick]`` (or ``python benchmarks/run.py pyramid``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from _harness import (  # noqa: E402
    BENCH_STACK,
    DATA,
    QUICK_STACK,
    benchmark_stack,
    ensure_phantom_stack,
    fmt_bytes,
    md_table,
    run_command,
    warm,
)
from _pyramid_baselines import BUILDERS, level_shapes, read_floor, slice_files  # noqa: E402

MB = 1e6
GOAL_RUST = 1.5  # x the read floor
GOAL_NUMPY = 5.0
GOAL_RSS = 300 * MB
GOAL_REOPEN = 0.5  # seconds, Large

CASES = ("floor", "rust", "numpy", "tensorstore", "pillow", "dask", "reopen")
LABELS = {
    "floor": "read floor (tifffile into one buffer)",
    "rust": "`ctstack pyramid` (Rust)",
    "numpy": "`ctstack pyramid`, `CTSTACK_NO_RUST=1`",
    "tensorstore": "tensorstore `downsample` (mean) -> zarr3",
    "pillow": "reference app: pair mean + Pillow `BOX`",
    "dask": "dask delayed reads + `coarsen(np.mean)` -> zarr",
    "reopen": "reopen with a valid cache",
}
PRELOAD = {
    "floor": ("numpy", "tifffile"),
    "dask": ("numpy", "tifffile", "dask.array", "zarr"),
    "tensorstore": ("numpy", "tifffile", "tensorstore"),
    "pillow": ("numpy", "tifffile", "PIL.Image", "zarr"),
}
SLOW = ("tensorstore", "pillow", "dask")  # one run each on big stacks


class StackSpec(NamedTuple):
    label: str
    name: str  # folder under benchmarks/data
    shape: tuple[int, int, int]
    dtype: str

    def ensure(self, quick: bool) -> Path:
        if self.name in (BENCH_STACK[0], QUICK_STACK[0]):
            return benchmark_stack(quick)  # the shared stack other benchmarks use
        return ensure_phantom_stack(self.name, self.shape, self.dtype, 0, voxel_size_um=10.0)


def _spec(label: str, shape: tuple[int, int, int], dtype: str) -> StackSpec:
    name = f"phantom_{'x'.join(map(str, shape))}_{dtype}"
    return StackSpec(label, name, shape, dtype)


FULL = (
    _spec("Large", (500, 2048, 2048), "uint16"),
    _spec("Medium", (100, 1024, 1024), "uint8"),
    _spec("500 slices", (500, 1024, 1024), "uint16"),
    _spec("2,500 slices", (2500, 1024, 1024), "uint16"),
)
QUICK = (
    _spec("Large (quick)", (64, 512, 512), "uint16"),
    _spec("Medium (quick)", (40, 256, 256), "uint8"),
    _spec("500 slices (quick: 100)", (100, 256, 256), "uint16"),
    _spec("2,500 slices (quick: 500)", (500, 256, 256), "uint16"),
)
MAX_SIZE = {False: 512, True: 128}


# ---------------------------------------------------------------- the worker (one process)


def _ctstack_cli(stack: str, out: str, max_size: int, rebuild: bool) -> tuple[float, dict]:
    import dask.array  # noqa: F401  (imported by build_pyramid; keep it out of the clock)
    import tifffile  # noqa: F401
    import zarr  # noqa: F401

    import ctstack
    import ctstack.cache
    import ctstack.pyramid
    import ctstack.stack
    from ctstack import cli

    cli.build_parser()  # imports every sub-command module
    argv = ["pyramid", stack, "--max-size", str(max_size), "--cache-dir", out]
    if rebuild:
        argv.append("--rebuild")
    text = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(text):
        rc = cli.main(argv)
    seconds = time.perf_counter() - t0
    sys.stderr.write(text.getvalue())
    if rc:
        raise SystemExit(f"ctstack pyramid exited with {rc}")
    words = text.getvalue().split()
    verb = "reused" if "reused" in words else "built" if "built" in words else "?"
    return seconds, {"backend": ctstack.backend(), "verb": verb}


def worker(case: str, stack: str, out: str, max_size: int) -> dict:
    """Run one case in this process; return its in-process seconds and details."""
    if case in ("rust", "numpy", "reopen"):
        seconds, info = _ctstack_cli(stack, out, max_size, rebuild=case != "reopen")
        return {"seconds": seconds, **info}
    for module in PRELOAD[case]:  # imports stay out of the in-process clock
        importlib.import_module(module)
    if case == "floor":
        t0 = time.perf_counter()
        read_floor(slice_files(stack))
        return {"seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    shapes = BUILDERS[case](slice_files(stack), Path(out), max_size)
    return {"seconds": time.perf_counter() - t0, "levels": [list(s) for s in shapes]}


# ---------------------------------------------------------------- the orchestrator


class CaseResult:
    """One case's runs on one stack (no dataclass: run.py loads this file outside sys.modules)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.walls: list[float] = []
        self.rss: list[int] = []
        self.checks: list[str] = []
        self.errors: list[str] = []

    @property
    def ok(self) -> bool:
        return bool(self.seconds)

    def median(self) -> float:
        return statistics.median(self.seconds)

    def wall(self) -> float:
        return statistics.median(self.walls)

    def peak(self) -> int:
        return max(self.rss)


def _run_case(case: str, folder: Path, out: Path, max_size: int) -> tuple[dict, float, int, str]:
    env = {"CTSTACK_NO_RUST": "1" if case == "numpy" else "0"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", case]
    cmd += ["--stack", str(folder), "--out", str(out), "--max-size", str(max_size)]
    warm([folder])
    res = run_command(cmd, env=env, timeout=3600)
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["?"])[-1]
        return {}, res.wall_s, res.peak_rss_bytes, f"exit {res.returncode}: {tail[:200]}"
    try:
        info = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}, res.wall_s, res.peak_rss_bytes, f"no JSON on stdout: {res.stdout[-200:]!r}"
    want = {"rust": "rust", "numpy": "numpy"}.get(case)
    if want and info.get("backend") != want:
        return {}, res.wall_s, res.peak_rss_bytes, f"backend was {info.get('backend')}"
    if case in ("rust", "numpy", "reopen"):
        verb = "reused" if case == "reopen" else "built"
        if info.get("verb") != verb:
            return {}, res.wall_s, res.peak_rss_bytes, f"expected {verb}, got {info.get('verb')}"
    return info, res.wall_s, res.peak_rss_bytes, ""


def _ctstack_levels(folder: Path, max_size: int, cache_dir: Path) -> list:
    """Levels 1..n of a ctstack cache as dask arrays (None if there is no valid entry)."""
    from ctstack import open_stack
    from ctstack.pyramid import cached_levels

    levels = cached_levels(open_stack(folder), max_size, cache_dir)
    if levels is None:
        raise RuntimeError(f"no valid ctstack cache in {cache_dir}")
    return levels[1:]


def _compare(reference: list, candidate: list) -> str:
    """Every level against ctstack's Rust build: identical, or the max |difference|."""
    import dask.array as da

    if [tuple(a.shape) for a in candidate] != [tuple(a.shape) for a in reference]:
        return "level shapes differ"
    worst, differing, total = 0, 0, 0
    for ref, got in zip(reference, candidate, strict=True):
        diff = abs(ref.astype("int64") - got.rechunk(ref.chunks).astype("int64"))
        level_max, level_count = da.compute(diff.max(), (diff != 0).sum())
        worst = max(worst, int(level_max))
        differing += int(level_count)
        total += ref.size
    if worst == 0:
        return "identical"
    return f"max abs diff {worst} ({100 * differing / total:.2g} % of voxels)"


def _candidate_levels(case: str, folder: Path, out: Path, max_size: int) -> list:
    import dask.array as da

    if case in ("rust", "numpy"):
        return _ctstack_levels(folder, max_size, out)
    n = len(list(out.iterdir()))
    return [da.from_zarr(str(out / str(i))) for i in range(1, n + 1)]


def measure_stack(
    spec: StackSpec, folder: Path, max_size: int, quick: bool, work: Path
) -> dict[str, CaseResult]:
    """Every case on one stack, interleaved, input warmed before each run."""
    from ctstack.pyramid import level_shapes as ctstack_level_shapes

    if level_shapes(spec.shape, max_size) != ctstack_level_shapes(spec.shape, max_size):
        raise RuntimeError("the baselines' level shapes differ from ctstack's")
    results = {case: CaseResult() for case in CASES}
    reference_dir = work / "reference"
    _info, _wall, _rss, err = _run_case("rust", folder, reference_dir, max_size)
    if err:
        raise RuntimeError(f"reference Rust build failed on {spec.label}: {err}")
    reference = _ctstack_levels(folder, max_size, reference_dir)
    big = spec.shape[0] * spec.shape[1] * spec.shape[2] * (2 if spec.dtype == "uint16" else 1)
    fast_repeats = 1 if quick else 3
    slow_repeats = 1 if quick or big > 512 * 2**20 else 3
    repeats = {c: slow_repeats if c in SLOW else fast_repeats for c in CASES}
    try:
        _rounds(results, repeats, folder, max_size, work, reference_dir, reference)
    finally:
        shutil.rmtree(reference_dir, ignore_errors=True)
    return results


def _rounds(results, repeats, folder, max_size, work, reference_dir, reference) -> None:
    """Interleaved rounds: A, B, C, ... with each case run at most ``repeats[case]`` times."""
    for r in range(max(repeats.values())):
        for case in CASES:
            if r >= repeats[case]:
                continue
            out = reference_dir if case == "reopen" else work / f"{case}-{r}"
            res = results[case]
            try:
                info, wall, rss, err = _run_case(case, folder, out, max_size)
                if err:
                    res.errors.append(err)
                    continue
                res.seconds.append(info["seconds"])
                res.walls.append(wall)
                res.rss.append(rss)
                if case not in ("floor", "reopen"):
                    res.checks.append(
                        _compare(reference, _candidate_levels(case, folder, out, max_size))
                    )
            finally:
                if out != reference_dir:
                    shutil.rmtree(out, ignore_errors=True)


def _ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}x" if floor > 0 else "?"


def _stack_table(results: dict[str, CaseResult]) -> str:
    floor = results["floor"]
    rows = []
    for case in CASES:
        res = results[case]
        if not res.ok:
            rows.append([LABELS[case], "FAILED", "", "", "", "", "; ".join(res.errors)[:200]])
            continue
        n = len(res.seconds)
        check = "n/a" if case in ("floor", "reopen") else "; ".join(sorted(set(res.checks)))
        if case == "rust":
            check += " (is the reference)" if check == "identical" else ""
        rows.append(
            [
                LABELS[case],
                f"{res.median():.3f}" + (f" ({n})" if n > 1 else ""),
                f"{res.wall():.2f}",
                f"{res.peak() / MB:.0f}",
                _ratio(res.median(), floor.median()) if floor.ok else "?",
                _ratio(res.wall(), floor.wall()) if floor.ok else "?",
                check,
            ]
        )
    return md_table(
        [
            "case",
            "in-process s (runs)",
            "whole command s",
            "peak RSS MB",
            "in-process / floor",
            "command / floor",
            "levels vs Rust build",
        ],
        rows,
    )


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _goals(labels: list[str], all_results: list[dict[str, CaseResult]], quick: bool) -> str:
    large, _medium, small, many = all_results
    rows = []
    fl = large["floor"]
    for case, goal in (("rust", GOAL_RUST), ("numpy", GOAL_NUMPY)):
        res = large[case]
        if res.ok and fl.ok:
            ratio = res.median() / fl.median()
            rows.append(
                [
                    f"{LABELS[case]} within {goal}x of the read floor ({labels[0]}, in-process)",
                    f"{res.median():.3f} s vs {fl.median():.3f} s = {ratio:.2f}x "
                    f"(whole command {res.wall() / fl.wall():.2f}x)",
                    _verdict(ratio <= goal),
                ]
            )
    for case in ("rust", "numpy"):
        peaks = {
            lab: r[case].peak() for lab, r in zip(labels, all_results, strict=True) if r[case].ok
        }
        if peaks:
            worst = max(peaks.values())
            rows.append(
                [
                    f"{LABELS[case]} peak RSS under 300 MB (every stack)",
                    ", ".join(f"{lab}: {v / MB:.0f} MB" for lab, v in peaks.items()),
                    _verdict(worst < GOAL_RSS),
                ]
            )
        a, b = small[case], many[case]
        if a.ok and b.ok:
            growth = b.peak() - a.peak()
            same = abs(growth) <= max(10 * MB, 0.05 * a.peak())
            rows.append(
                [
                    f"{LABELS[case]} peak RSS the same at {labels[3]} as at {labels[2]}",
                    f"{a.peak() / MB:.0f} MB -> {b.peak() / MB:.0f} MB ({growth / MB:+.0f} MB)",
                    _verdict(same) + " (within 10 MB or 5 %)",
                ]
            )
    ro = large["reopen"]
    if ro.ok:
        rows.append(
            [
                f"reopen with a valid cache under {GOAL_REOPEN} s ({labels[0]}, open + levels)",
                f"{ro.median():.3f} s in-process, {ro.wall():.2f} s whole command",
                _verdict(ro.median() < GOAL_REOPEN),
            ]
        )
    note = " (quick sizes: indicative only)" if quick else ""
    return f"Goals{note}:\n\n" + md_table(["goal", "measured", "verdict"], rows)


def _ctstack_fsync_text() -> str:
    return "does not fsync (a torn entry is caught by its chunk sizes at load)"


def run(quick: bool) -> str:
    """Measure every case on every stack; return the markdown section."""
    specs = QUICK if quick else FULL
    max_size = MAX_SIZE[quick]
    work_root = DATA / f"pyramid_work_{os.getpid()}"
    sections, all_results, labels = [], [], []
    t_start = time.perf_counter()
    try:
        for spec in specs:
            folder = spec.ensure(quick)
            files = slice_files(folder)
            nbytes = sum(f.stat().st_size for f in files)
            results = measure_stack(spec, folder, max_size, quick, work_root / spec.name)
            all_results.append(results)
            labels.append(spec.label)
            shapes = level_shapes(spec.shape, max_size)
            z, y, x = spec.shape
            head = (
                f"**{spec.label}**: {z} x {y} x {x} {spec.dtype}, {len(files)} uncompressed "
                f"TIFF slices, {fmt_bytes(nbytes)}; levels "
                + ", ".join(" x ".join(map(str, s)) for s in shapes)
            )
            sections += [head, "", _stack_table(results), ""]
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    took = time.perf_counter() - t_start
    intro = [
        "### Pyramid build: ctstack vs the read floor, dask, tensorstore, Pillow",
        "",
        "Each case is a fresh process; the input is warmed (every file read once) right "
        "before every run, and cases run interleaved (A, B, C, ... repeated). *In-process*: "
        "the work after imports (open, read, downsample, write); *whole command*: the process "
        "wall time including Python start-up and imports; peak RSS of the whole process "
        "(`/usr/bin/time -v`). Medians over the runs shown in brackets (one run otherwise; "
        "the slow competitors run once on stacks above 512 MiB). Ratios are to the read floor "
        "of the same stack. Every build writes every level (largest axis <= "
        f"{max_size}) to disk, uncompressed; ctstack's cache writer "
        f"{_ctstack_fsync_text()}; "
        "tensorstore's file driver fsyncs by default (`file_io_sync`); the zarr-python "
        "writers (dask, Pillow) do not. "
        "The last column compares every level with the Rust build, voxel by voxel.",
        "",
        "Cases: the read floor is `tifffile.imread(f, out=buf)` per slice, one thread; "
        "`ctstack pyramid` is the CLI (`ctstack.cli.main`) with `--rebuild --cache-dir` a fresh "
        "folder; reopen is the same command without `--rebuild` on a cache built before "
        "(open the stack, find the cache, levels available); dask, tensorstore and the Pillow "
        "method are in `benchmarks/_pyramid_baselines.py`.",
        "",
    ]
    footer = [
        _goals(labels, all_results, quick),
        "",
        f"Command: `python benchmarks/run.py pyramid{' --quick' if quick else ''}` ({took:.0f} s).",
    ]
    return "\n".join(intro + sections + footer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, seconds")
    parser.add_argument("--case", choices=CASES, help="worker: run one case and print JSON")
    parser.add_argument("--stack", help="worker: the stack folder")
    parser.add_argument("--out", help="worker: output folder (cache dir for ctstack cases)")
    parser.add_argument("--max-size", type=int, default=512, help="worker: last level size")
    args = parser.parse_args()
    if args.case:
        if not args.stack or not args.out:
            parser.error("--case needs --stack and --out")
        info = worker(args.case, args.stack, args.out, args.max_size)
        print(json.dumps(info))
        return
    print(run(args.quick))


if __name__ == "__main__":
    main()
