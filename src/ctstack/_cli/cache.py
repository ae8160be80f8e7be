"""``ctstack cache list|clean [PATH]``: show or remove pyramid caches (the ROI file stays).

PATH is a stack folder or one of its files; its caches are looked for beside it (``.ctstack/``)
and in the shared cache dirs. Without PATH, every stack cached in the shared dir is covered.
Only headers are read (to find the stack's folder), and a stack that no longer opens can still
have its cache cleaned.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from .. import cache as _cache
from ..errors import CTStackError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="list or clean pyramid caches",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("action", choices=("list", "clean"))
    parser.add_argument("path", nargs="?", type=Path, help="stack folder or file (default: all)")
    parser.add_argument(
        "--all", action="store_true", help="clean: also remove the ROI file (roi.json)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="shared cache dir (default: user cache)"
    )
    parser.set_defaults(func=run)


def locations(path: Path | None, cache_dir: Path | None = None) -> list[Path]:
    """Existing cache locations for one stack folder, or every one in the shared dir."""
    shared = cache_dir if cache_dir is not None else _cache.global_cache_dir()
    if path is None:
        try:
            return sorted(p for p in shared.iterdir() if p.is_dir())
        except OSError:
            return []
    folder = stack_root(path)
    candidates = [folder / _cache.LOCAL_DIRNAME, shared / _cache._namespace(folder)]
    if cache_dir is None:
        # read-only stacks fall back to the user cache dir, even when the env var is set
        import platformdirs

        candidates.append(Path(platformdirs.user_cache_dir("ctstack")) / _cache._namespace(folder))
    out: list[Path] = []
    for c in candidates:
        if c.is_dir() and c not in out:
            out.append(c)
    return out


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


def describe(item: dict) -> str:
    """One line of ``cache list``."""
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
        total = 0
        for loc in locs:
            items = _cache.list_location(loc)
            roi = (loc / _cache.ROI_FILE).is_file()
            if not items and not roi:
                continue
            print(f"{loc}")
            for item in items:
                print(describe(item))
                total += item["bytes"]
            if roi:
                print(f"  {_cache.ROI_FILE}  (user ROIs; kept by clean)")
        if not total:
            print("no pyramid cache found")
        else:
            print(f"total {_mb(total)}")
        return 0
    freed = sum(_cache.clean_location(loc, keep_roi=not args.all) for loc in locs)
    print(f"freed {_mb(freed)} in {len(locs)} cache location(s)")
    return 0
