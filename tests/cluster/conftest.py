"""The cluster suite's fixtures: one small LocalCluster per module, stacks and entry helpers.

Every test here runs on ``LocalCluster(processes=True, n_workers=2, threads_per_worker=1)``;
the suite runs once in CI (not in the numpy-fallback pass).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

SKIP_IN_ENTRY = {"manifest.json"}  # compared field by field (its build id and time differ)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as c:
        yield c


def entry_of(cache_dir: Path) -> Path:
    """The one committed entry folder under ``cache_dir``."""
    found = sorted(p for p in Path(cache_dir).rglob("*.pyramid") if p.is_dir())
    assert len(found) == 1, found
    return found[0]


def tree_files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative POSIX path -> bytes)."""
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            out[p.relative_to(folder).as_posix()] = p.read_bytes()
    return out


def assert_same_entry(a: Path, b: Path) -> None:
    """Two cache entries hold the same files byte for byte, and the same manifest except for
    what names one build (its id, its time)."""
    import json

    fa, fb = tree_files(a), tree_files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if name not in SKIP_IN_ENTRY:
            assert fa[name] == fb[name], name
    ma, mb = (json.loads(x["manifest.json"]) for x in (fa, fb))
    for m in (ma, mb):
        m.pop("build"), m.pop("created")
    assert ma == mb
