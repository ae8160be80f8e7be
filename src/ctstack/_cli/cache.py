"""``ctstack cache list|clean|verify [PATH]``: show, remove or check pyramid caches.

PATH is a stack folder or one of its files; its caches are looked for beside it (``.ctstack/``)
and in the shared cache dirs. Without PATH, every stack cached in the shared dir is covered.
Only headers are read (to find the stack's folder), and a stack that no longer opens can still
have its cache cleaned. Only folders ctstack made are removed: a location that is a symbolic
link is left alone (with a note), and in the shared dir only namespace-named folders are looked at.
``verify`` reads every chunk and compares it with the checksums written at build time (exit
code 2 when an entry is bad; ``--fix`` removes bad entries, so the next use rebuilds them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from .. import locations as _locations
from ..cache import clean_location, list_location, verify_entry
from ..cache.housekeeping import remove_tree
from ..errors import CTStackError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cache list|clean``; each action is its own parser so options may precede PATH."""
    parser = subparsers.add_parser(
        "cache",
        help="list or clean pyramid caches",
        description=__doc__.splitlines()[0],
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("path", nargs="?", type=Path, help="stack folder or file (default: all)")
    common.add_argument(
        "--all", action="store_true", help="clean: also remove the ROI file (roi.json)"
    )
    common.add_argument(
        "--cache-dir", type=Path, default=None, help="shared cache dir (default: user cache)"
    )
    common.add_argument(
        "--fix", action="store_true", help="verify: remove the entries that fail the check"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", parents=[common], help="show pyramid caches")
    actions.add_parser("clean", parents=[common], help="remove pyramid caches (ROIs stay)")
    actions.add_parser(
        "verify", parents=[common], help="check every chunk against its build-time checksum"
    )
    parser.set_defaults(func=run)


def locations(path: Path | None, cache_dir: Path | None = None) -> list[Path]:
    """Existing cache locations for one stack folder, or every one in the shared dir."""
    if path is None:  # only folders named as ctstack names them: the shared dir may hold anything
        return _locations.shared_locations(cache_dir)
    candidates = _locations.stack_locations(stack_root(path), cache_dir)
    return [c for c in candidates if c.is_dir()]


def stack_root(path: Path) -> Path:
    """The folder owning the stack at ``path``: ``Stack.root`` when it opens, else the folder.

    A stack that no longer opens (slices deleted, broken) can still have its cache cleaned.
    """
    try:
        from ..stack import open_stack

        return Path(open_stack(path).root)
    except (ImportError, CTStackError):
        return path.parent if path.is_file() else path


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def describe(item: dict[str, Any]) -> str:
    """One line of ``cache list``."""
    if item["kind"] == "partial":  # a resumable cluster build: kept until clean or a week idle
        state = "stale" if item.get("stale") else "resumable; `ctstack cache clean` removes it"
        return f"  {item['path'].name}  partial build ({state})  " + _mb(item["bytes"])
    if item["kind"] != "entry":
        state = "stale" if item.get("stale") else "in use"
        return f"  {item['path'].name}  {item['kind']} ({state}, pid {item['pid']})  " + _mb(
            item["bytes"]
        )
    shapes = ", ".join("x".join(map(str, s)) for s in item["levels"]) or "?"
    created = (
        dt.datetime.fromtimestamp(item["created"]).strftime("%Y-%m-%d %H:%M")
        if isinstance(item.get("created"), int | float)
        else "?"
    )
    if item.get("old"):
        state = f"OLD FORMAT (version {item['version']}: unused; `ctstack cache clean` removes it)"
    else:
        state = "complete" if item["complete"] else "INCOMPLETE"
    return (
        f"  {item['path'].name}  series {item['name']!r}  levels 1..{len(item['levels'])}: "
        f"{shapes}  {item['dtype']}  {_mb(item['bytes'])}  {created}  {state}"
    )


def run(args: argparse.Namespace) -> int:
    path = args.path
    if path is not None and not path.exists():
        raise CTStackError(f"{path}: no such file or folder")
    locs = locations(path, args.cache_dir)
    if args.action == "list":
        return list_caches(locs)
    if args.action == "verify":
        return verify_caches(locs, fix=args.fix)
    freed, cleaned, failed = 0, 0, 0
    for loc in locs:
        if os.path.islink(loc):
            print(f"left alone: {loc} is a symbolic link (ctstack never deletes through one)")
            continue
        try:
            freed += clean_location(loc, keep_roi=not args.all)
        except CTStackError as exc:  # read-only, another user's: say so, go on with the rest
            print(f"ctstack cache: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        cleaned += 1
    print(f"freed {_mb(freed)} in {cleaned} cache location(s)")
    return 2 if failed else 0


def list_caches(locs: list[Path]) -> int:
    """Print what ``cache list`` shows for these locations; a symlinked one is marked as such."""
    total = 0
    for loc in locs:
        items = list_location(loc)
        roi = (loc / _locations.ROI_FILE).is_file()
        if not items and not roi:
            continue
        link = "  (symbolic link: read, never cleaned)" if os.path.islink(loc) else ""
        print(f"{loc}{link}")
        for item in items:
            print(describe(item))
            total += item["bytes"]
        if roi:
            print(f"  {_locations.ROI_FILE}  (user ROIs; kept by clean)")
    if not total:
        print("no pyramid cache found")
    else:
        print(f"total {_mb(total)}")
    return 0


def verify_caches(locs: list[Path], fix: bool = False) -> int:
    """``cache verify``: one line per entry; 2 when any is bad (removed with ``fix``)."""
    checked, bad = 0, 0
    for loc in locs:
        for item in list_location(loc):
            if item["kind"] != "entry":
                continue
            checked += 1
            problems = verify_entry(item["path"])
            if not problems:
                print(f"ok   {item['path']}")
                continue
            bad += 1
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            print(f"BAD  {item['path']}: {problems[0]}{more}")
            if fix and not os.path.islink(loc):
                try:
                    remove_tree(item["path"], strict=True)
                    print("     removed; the next use rebuilds it")
                except OSError as exc:
                    print(
                        f"ctstack cache: error: {item['path']}: cannot remove ({exc})",
                        file=sys.stderr,
                    )
    print(f"{checked} entr{'y' if checked == 1 else 'ies'} checked, {bad} bad")
    return 2 if bad else 0
