"""Run the benchmarks and append one dated section to benchmarks/RESULTS.md.

Usage: ``python benchmarks/run.py [--quick] [--no-save] [NAME ...]``. NAME selects
``benchmarks/bench_NAME.py`` (all of them when none is given); each module's ``run(quick)``
returns a markdown section. The section is headed with the machine description.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS.md"
sys.path.insert(0, str(BENCH_DIR))  # so bench modules can `import _harness`

import _harness  # noqa: E402


def discover() -> dict[str, Path]:
    """Map each benchmark name to its module file: ``bench_kernel.py`` -> ``kernel``."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


def run_one(name: str, path: Path, quick: bool) -> tuple[str, bool]:
    """Run one benchmark; a failure becomes a section saying so instead of stopping the rest."""
    t0 = time.perf_counter()
    try:
        body = _load(name, path).run(quick).strip()
        ok = True
    except Exception:
        body = "**FAILED**\n\n```\n" + traceback.format_exc().strip() + "\n```"
        ok = False
    took = time.perf_counter() - t0
    if not body.lstrip().startswith("#"):
        body = f"### {name}\n\n{body}"
    return f"{body}\n\n_{path.name}: {took:.1f} s wall, quick={quick}_", ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small inputs, runs in seconds")
    parser.add_argument("--no-save", action="store_true", help="print only, leave RESULTS.md")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    found = discover()
    if args.list:
        print("\n".join(found))
        return 0
    unknown = [n for n in args.names if n not in found]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; have: {', '.join(found)}")
    names = args.names or list(found)

    stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    head = f"## {stamp}: {', '.join(names)}{' (quick)' if args.quick else ''}"
    parts = [head, "", _harness.machine_markdown()]
    print("\n".join(parts), flush=True)
    failed = []
    for name in names:
        print(f"\n[running {name} ...]", file=sys.stderr, flush=True)
        section, ok = run_one(name, found[name], args.quick)
        if not ok:
            failed.append(name)
        parts += ["", section]
        print("\n" + section, flush=True)
    text = "\n".join(parts) + "\n"
    if not args.no_save:
        if not RESULTS.exists():
            RESULTS.write_text(
                "# Benchmark results\n\nAppended by `python benchmarks/run.py`; "
                "do not edit by hand. Newest last.\n"
            )
        with RESULTS.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text)
        print(f"\nappended to {RESULTS}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
