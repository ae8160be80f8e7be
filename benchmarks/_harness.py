"""Shared helpers for the benchmarks: machine description, warming, interleaved timing, whole
commands in a subprocess (wall time and peak RSS), markdown tables and cached phantom stacks.

Each ``benchmarks/bench_*.py`` exposes ``run(quick: bool) -> str`` (a markdown section);
``benchmarks/run.py`` collects them into ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DATA = BENCH_DIR / "data"  # git-ignored

if str(REPO / "src") not in sys.path:  # a plain checkout works before `pip install -e .`
    try:
        import ctstack  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))


# ---------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> str:
    """The SIMD levels that matter for the kernels (AVX2, AVX-512), from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return ", ".join(f for f in ("sse4_2", "avx2", "avx512f") if f in flags)
    except OSError:
        pass
    return "?"


def _ram_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=10"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine() -> dict[str, str]:
    """Describe this machine and software stack, to record next to every figure."""
    import numpy as np

    try:
        import ctstack

        backend = f"{ctstack.backend()} (ctstack {ctstack.__version__})"
    except Exception as exc:  # a broken package must not stop the benchmark report
        backend = f"unavailable ({type(exc).__name__}: {exc})"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = f"{os.cpu_count()} logical" + (f", {affinity} usable" if affinity else "")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {
        "CPU": f"{_cpu_model()} ({_cpu_flags()})",
        "cores": cores,
        "RAM": f"{_ram_bytes() / 2**30:.1f} GiB",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "numpy": np.__version__,
        "ctstack backend": backend,
        "git commit": _git_commit(),
        "load average at start": load,
    }


def machine_markdown() -> str:
    """The machine description as a markdown bullet list."""
    return "\n".join(f"- **{k}**: {v}" for k, v in machine().items())


# ---------------------------------------------------------------- page cache


def _files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        elif p.is_file():
            out.append(p)
    return out


def warm(paths: Iterable[str | os.PathLike[str]]) -> int:
    """Read every file (folders recursively) once, so a timed run starts from a warm page cache.

    These VMs page out cache left idle for about a minute: call this right before timing.
    Returns the number of bytes read.
    """
    buf = bytearray(16 << 20)
    view = memoryview(buf)
    total = 0
    for f in _files(paths):
        with open(f, "rb", buffering=0) as fh:
            while n := fh.readinto(view):
                total += n
    return total


def drop_cache(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Ask the kernel to evict these files from the page cache (a cold-read measurement)."""
    for f in _files(paths):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """The wall times of one case over the repeats, in seconds."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)


def time_interleaved(
    cases: Mapping[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    before: Callable[[str], object] | None = None,
) -> dict[str, Timing]:
    """Time the cases round-robin (A, B, C, A, B, C, ...) so that machine noise hits all alike.

    ``warmup`` untimed rounds come first; ``before(name)`` (e.g. warming the input) runs
    untimed before every call. Returns each case's times; quote medians.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(warmup + repeats):
        for name, fn in cases.items():
            if before is not None:
                before(name)
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
    return {name: Timing(tuple(ts)) for name, ts in times.items()}


@dataclass(frozen=True)
class CommandResult:
    """A whole command run in a fresh process: wall time, peak resident memory, exit and output."""

    wall_s: float
    peak_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str


_RSS_WRAPPER = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:]).returncode
kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write(f"\\nCTSTACK_MAXRSS_KB={kb}\\n")
sys.exit(rc)
"""


def run_command(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> CommandResult:
    """Run cmd in a fresh process; return its wall time and peak RSS (with all its children).

    Uses ``/usr/bin/time -v`` when present, else a fresh Python parent that reads
    ``getrusage(RUSAGE_CHILDREN)`` (a fresh one, so earlier children cannot inflate it).
    """
    full_env = {**os.environ, **(env or {})}
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    with tempfile.TemporaryDirectory(prefix="ctstack-bench-") as tmp:
        report = Path(tmp) / "time.txt"
        if gnu_time:
            argv = [gnu_time, "-v", "-o", str(report), *cmd]
        else:
            argv = [sys.executable, "-c", _RSS_WRAPPER, *cmd]
        t0 = time.perf_counter()
        proc = subprocess.run(
            argv, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
        wall = time.perf_counter() - t0
        stderr, kb = proc.stderr, 0
        if gnu_time and report.is_file():
            for line in report.read_text().splitlines():
                if "Maximum resident set size" in line:
                    kb = int(line.rsplit(":", 1)[1])
        else:
            head, _, tail = stderr.rpartition("CTSTACK_MAXRSS_KB=")
            if tail.strip().isdigit():
                kb, stderr = int(tail.strip()), head.rstrip("\n")
    return CommandResult(wall, kb * 1024, proc.returncode, proc.stdout, stderr)


# ---------------------------------------------------------------- formatting


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table; numbers right-aligned."""
    rows = [[str(c) for c in row] for row in rows]
    right = [all(_numeric(r[i]) for r in rows) and bool(rows) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if r else "---" for r in right) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    t = text.replace(",", "").replace("%", "").replace("x", "").strip()
    try:
        float(t.split()[0] if t else "nan")
    except ValueError:
        return False
    return True


def fmt_s(seconds: float) -> str:
    """Seconds with a sensible unit (µs, ms, s)."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float) -> str:
    """Bytes in binary units."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def gbps(nbytes: float, seconds: float) -> float:
    """Throughput in GB/s (10^9 bytes per second)."""
    return nbytes / seconds / 1e9 if seconds > 0 else float("inf")


# ---------------------------------------------------------------- phantom data


def _phantom_fingerprint(shape: tuple[int, int, int], dtype: str, seed: int) -> str:
    """A hash of three slices as the generator makes them now: a changed phantom rewrites the
    stored stack, a cosmetic edit of the generator does not."""
    from ctstack.sample import phantom_slice

    h = hashlib.sha256()
    for i in sorted({shape[0] // 4, shape[0] // 2, (3 * shape[0]) // 4}):
        h.update(phantom_slice(i, shape, dtype, seed).tobytes())
    return h.hexdigest()[:16]


def ensure_phantom_stack(
    name: str,
    shape: tuple[int, int, int],
    dtype: str = "uint16",
    seed: int = 0,
    voxel_size_um: float | None = None,
) -> Path:
    """Return benchmarks/data/<name>/, a phantom TIFF stack written once and then reused.

    A manifest beside the folder (``<name>.manifest.json``, written last) records what was
    made and a fingerprint of the generator's output; a missing or different manifest, or a
    missing or resized file, rewrites the folder.
    """
    from ctstack.sample import write_phantom_stack

    DATA.mkdir(parents=True, exist_ok=True)
    folder = DATA / name
    manifest = DATA / f"{name}.manifest.json"
    want = {
        "shape": list(shape),
        "dtype": dtype,
        "seed": seed,
        "voxel_size_um": voxel_size_um,
        "generator": _phantom_fingerprint(shape, dtype, seed),
    }
    with _locked(DATA / f"{name}.lock"):  # two benchmark processes write it once
        try:
            have = json.loads(manifest.read_text())
            files = have.get("files", {})
            if {k: have.get(k) for k in want} == want and all(
                (folder / f).stat().st_size == size for f, size in files.items()
            ):
                return folder
        except (OSError, ValueError):
            pass
        manifest.unlink(missing_ok=True)
        if folder.exists():
            shutil.rmtree(folder)
        paths = write_phantom_stack(folder, shape, dtype, seed, voxel_size_um=voxel_size_um)
        files = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
        manifest.write_text(json.dumps({**want, "files": files, "slices": len(paths)}, indent=1))
    return folder


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock on path for the duration of the block."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


BENCH_STACK = ("phantom_500x2048x2048_uint16", (500, 2048, 2048))
QUICK_STACK = ("phantom_64x512x512_uint16", (64, 512, 512))


def benchmark_stack(quick: bool) -> Path:
    """The shared benchmark stack (500 x 2048 x 2048 uint16, 4.2 GB; quick: 64 x 512 x 512),
    10 µm voxels with a SkyScan-style log; written once, reused by every benchmark."""
    name, shape = QUICK_STACK if quick else BENCH_STACK
    return ensure_phantom_stack(name, shape, "uint16", seed=0, voxel_size_um=10.0)
