"""Two commits side by side: pyramid build and napari slice steps, interleaved old/new.

For a refactoring that must not slow anything down. ``CTSTACK_BENCH_BASELINE=REV`` names the
old commit (without it the benchmark says how to run it and measures nothing), and
``CTSTACK_BENCH_CANDIDATE=REV`` the new one (default ``HEAD``). Each commit is checked out
into its own git worktree under ``benchmarks/data/worktrees/`` and its Rust core built there
(release, as maturin builds it), so uncommitted edits in this checkout never leak in. Every
case runs in a fresh process with ``PYTHONPATH`` set to that worktree's ``src``, in the order
old, new, old, new, ...; the figures are medians and the verdict is the ratio new/old.

Run: ``CTSTACK_BENCH_BASELINE=41ea6b8 python benchmarks/run.py commits``;
``CTSTACK_BENCH_CASES=pyramid`` (or ``napari``) runs one case only; ``CTSTACK_BENCH_ROUNDS``
sets the rounds (default 5).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

REPO = Path(__file__).resolve().parents[1]
WORKTREES = REPO / "benchmarks" / "data" / "worktrees"
GOAL = 1.05  # new/old ratio of medians, at most
STEPS = 40


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def checkout(rev: str) -> Path:
    """A worktree of ``rev`` with its Rust core built into ``src/ctstack`` (reused if present)."""
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    tree = WORKTREES / sha[:12]
    if not (tree / ".git").exists():
        WORKTREES.mkdir(parents=True, exist_ok=True)
        _git("worktree", "add", "--force", "--detach", str(tree), sha)
    so = tree / "src" / "ctstack" / "_core.so"
    if not so.exists():
        target = WORKTREES / "cargo-target"
        subprocess.run(
            [
                "cargo", "build", "--release", "--quiet", "--lib",
                "--features", "pyo3/extension-module",
                "--manifest-path", str(tree / "rust" / "Cargo.toml"),
                "--target-dir", str(target),
            ],
            check=True,
        )  # fmt: skip
        shutil.copy2(target / "release" / "lib_core.so", so)
    return tree


def _env(tree: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree / "src")
    env["CTSTACK_CACHE_DIR"] = str(cache)
    env["CTSTACK_REQUIRE_RUST"] = "1"
    env.pop("QT_QPA_PLATFORM", None)
    return env


def _worker(tree: Path, case: str, stack: Path, cache: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, "--stack", str(stack)]
    if case == "napari" and not os.environ.get("DISPLAY"):
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1200x24", *cmd]
    done = subprocess.run(
        cmd, env=_env(tree, cache), capture_output=True, text=True, timeout=1800, cwd=tree
    )
    if done.returncode != 0:
        raise RuntimeError(f"{case} worker in {tree.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ workers (fresh processes)


def work_pyramid(stack_path: str) -> dict:
    """One full pyramid build of the stack (warm input), into a fresh cache folder."""
    import ctstack

    stack = ctstack.open_stack(stack_path)
    _harness.warm(stack.files)
    t0 = time.perf_counter()
    levels = stack.build_pyramid(rebuild=True)
    return {"build_s": time.perf_counter() - t0, "levels": len(levels) - 1}


def work_napari(stack_path: str) -> dict:
    """A shown viewer on the cached stack: first frame, z-step medians zoomed out and at 1:1."""
    from qtpy.QtWidgets import QApplication

    import ctstack
    import napari

    stack = ctstack.open_stack(stack_path)
    stack.build_pyramid()  # reuse (or make) the cache, so the viewer opens the multiscale layer
    _harness.warm(stack.files)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1200, 900)
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    app = QApplication.instance()

    def wait() -> None:
        app.processEvents()
        canvas.native.repaint()
        app.processEvents()

    wait()
    t0 = time.perf_counter()
    [layer] = viewer.open(stack_path, plugin="napari-ctstack")
    wait()
    first = time.perf_counter() - t0
    zs = [stack.shape[0] // 4 + i for i in range(STEPS)]

    def steps() -> list[float]:
        for z in zs[:3]:
            viewer.dims.set_current_step(0, z)
            wait()
        out = []
        for z in zs:
            t = time.perf_counter()
            viewer.dims.set_current_step(0, z)
            wait()
            out.append(time.perf_counter() - t)
        return out

    viewer.reset_view()
    wait()
    zoomed_out = steps()
    viewer.scene.camera.zoom *= 2 ** len(layer.level_shapes)
    wait()
    full = steps()
    viewer.close()
    return {
        "first_frame_s": first,
        "step_out_ms": statistics.median(zoomed_out) * 1000,
        "step_full_ms": statistics.median(full) * 1000,
    }


# ------------------------------------------------------------------ the benchmark


CASES = {
    "pyramid": (("build_s", "pyramid build", "s"),),
    "napari": (
        ("first_frame_s", "napari first frame, cache hit", "s"),
        ("step_out_ms", "napari z step, zoomed out (median of 40)", "ms"),
        ("step_full_ms", "napari z step, full resolution (median of 40)", "ms"),
    ),
}


def run(quick: bool) -> str:
    baseline = os.environ.get("CTSTACK_BENCH_BASELINE")
    candidate = os.environ.get("CTSTACK_BENCH_CANDIDATE", "HEAD")
    if not baseline:
        return (
            "### commits\n\nskipped: set `CTSTACK_BENCH_BASELINE=REV` (and optionally "
            "`CTSTACK_BENCH_CANDIDATE=REV`, default HEAD) to compare two commits."
        )
    rounds = int(os.environ.get("CTSTACK_BENCH_ROUNDS", 2 if quick else 5))
    wanted = os.environ.get("CTSTACK_BENCH_CASES", ",".join(CASES)).split(",")
    cases = {k: v for k, v in CASES.items() if k in wanted}
    stack = _harness.benchmark_stack(quick)
    trees = {"old": checkout(baseline), "new": checkout(candidate)}
    names = {k: f"{_git('rev-parse', '--short', 'HEAD', cwd=t)}" for k, t in trees.items()}
    results: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    with tempfile.TemporaryDirectory(prefix="ctstack-bench-commits-") as tmp:
        caches = {k: Path(tmp) / k for k in trees}  # cache formats differ between commits
        for case in cases:
            for _ in range(rounds):
                for which, tree in trees.items():
                    got = _worker(tree, case, stack, caches[which])
                    for key, value in got.items():
                        results[which].setdefault(key, []).append(float(value))
    rows, worst = [], 0.0
    for metrics in cases.values():
        for key, label, unit in metrics:
            old = statistics.median(results["old"][key])
            new = statistics.median(results["new"][key])
            ratio = new / old
            worst = max(worst, ratio)
            fmt = (lambda v: f"{v:.3f} s") if unit == "s" else (lambda v: f"{v:.1f} ms")
            rows.append([label, fmt(old), fmt(new), f"{ratio:.3f}"])
    table = _harness.md_table(
        ["measure", f"old {names['old']}", f"new {names['new']}", "new / old"], rows
    )
    verdict = "met" if worst <= GOAL else "NOT met"
    shape = " x ".join(map(str, (_harness.QUICK_STACK if quick else _harness.BENCH_STACK)[1]))
    return (
        f"### commits: {names['old']} (old) vs {names['new']} (new)\n\n"
        f"{shape} uint16 benchmark stack, warm; each figure is the median of {rounds} fresh "
        f"processes per commit, run old/new interleaved (napari: a shown viewer on Xvfb, "
        f"software OpenGL; the z-step figures are themselves medians of {STEPS} steps).\n\n"
        f"{table}\n\nGoal: every ratio <= {GOAL} — **{verdict}** (worst {worst:.3f})."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=list(CASES), required=True)
    parser.add_argument("--stack", required=True)
    args = parser.parse_args()
    work = work_pyramid if args.worker == "pyramid" else work_napari
    print(json.dumps(work(args.stack)), flush=True)


if __name__ == "__main__":
    main()
