"""Input throughput of one 2x2x2 mean pyramid level: Rust core, numpy fallback, scikit-image,
against a plain ``np.copyto`` of the same bytes as the memory-bandwidth limit (issue 2, item 5).

Goal: the Rust kernel reaches at least 40 % of the copy throughput on 2 cores. Full run: a
64 x 2048 x 2048 uint16 phantom in memory; ``--quick``: 16 x 1024 x 1024.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from _harness import fmt_bytes, fmt_s, gbps, md_table, time_interleaved

GOAL = 0.40  # Rust throughput / copy throughput
COPY = "np.copyto (bandwidth limit)"
RUST = "Rust ctstack._core.downsample"
NUMPY = "numpy fallback _backend.downsample_numpy"
SK_DLM = "skimage downscale_local_mean"
SK_BR = "skimage block_reduce(np.mean)"


def _round_half_up(mean: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """skimage's float64 block mean rounded like the pyramid (exact: sums of 8 are k/8)."""
    return np.floor(mean + 0.5).astype(dtype)


def run(quick: bool) -> str:
    """Time the kernels side by side on an in-memory phantom; return a markdown section."""
    from skimage.measure import block_reduce
    from skimage.transform import downscale_local_mean

    from ctstack._backend import downsample_numpy
    from ctstack.sample import phantom

    shape = (16, 1024, 1024) if quick else (64, 2048, 2048)
    repeats = 5
    vol = phantom(shape, "uint16")
    dst = np.empty_like(vol)
    dst.fill(0)  # touch the pages once so the copy measures bandwidth, not page faults

    notes: list[str] = []
    cases: dict[str, Callable[[], object]] = {COPY: lambda: np.copyto(dst, vol)}
    try:
        from ctstack import _core

        cases[RUST] = lambda: _core.downsample(vol)
    except ImportError as exc:
        notes.append(f"- **{RUST}: missing** (`import ctstack._core` failed: {exc}).")
    cases[NUMPY] = lambda: downsample_numpy(vol)
    cases[SK_DLM] = lambda: downscale_local_mean(vol, (2, 2, 2))
    cases[SK_BR] = lambda: block_reduce(vol, (2, 2, 2), np.mean)

    # correctness, once, untimed: everything against the numpy fallback
    ref = downsample_numpy(vol)
    agree: dict[str, str] = {COPY: "n/a"}
    agree[NUMPY] = "reference"
    for name in (RUST, SK_DLM, SK_BR):
        if name in cases:
            out = cases[name]()
            if name != RUST:
                out = _round_half_up(np.asarray(out), vol.dtype)
            agree[name] = "exact" if np.array_equal(out, ref) else "DIFFERS"
            del out
    del ref

    timings = time_interleaved(cases, repeats=repeats, warmup=1)
    copy_gbps = gbps(vol.nbytes, timings[COPY].median)
    rows = []
    for name, t in timings.items():
        rate = gbps(vol.nbytes, t.median)
        rows.append(
            [
                name,
                fmt_s(t.median),
                fmt_s(t.min),
                f"{rate:.2f}",
                f"{rate / copy_gbps:.0%}",
                agree[name],
            ]
        )
    headers = ["case", "median", "min", "input GB/s", "of copy", "result vs numpy fallback"]

    z, y, x = shape
    lines = [
        f"### Kernel: one 2x2x2 mean level of a {z} x {y} x {x} uint16 phantom "
        f"({fmt_bytes(vol.nbytes)} in memory)",
        "",
        f"Interleaved rounds (1 warm-up, {repeats} timed), medians. Input GB/s = input bytes / "
        "median time; the copy reads and writes the same bytes into a preallocated array, the "
        "kernels allocate their 1/8-size output as the API does. skimage results are float64, "
        "compared after rounding half up. "
        f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')}.",
        "",
        md_table(headers, rows),
        "",
    ]
    if RUST in timings:
        ratio = timings[COPY].median / timings[RUST].median  # throughput ratio
        verdict = "met" if ratio >= GOAL else "NOT met"
        lines.append(
            f"**Rust / copy throughput = {ratio:.2f}** (goal >= {GOAL:.2f}: {verdict}); "
            f"Rust / numpy fallback = {timings[NUMPY].median / timings[RUST].median:.1f}x."
        )
    lines += notes
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(run("--quick" in sys.argv))
