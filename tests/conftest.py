"""Shared fixtures: where the real CT scans live, and small helpers used across test modules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"
REAL_SCANS = ("vtkjs_headsq_ct", "niivue_ct_pitch_head", "vtkjs_lidc2_chest_ct")


def real_scan(name: str) -> tuple[Path, dict]:
    """Return the folder of one real scan and its JSON facts, or skip when ../shared is absent."""
    folder = REAL_DATA / name
    if not folder.is_dir():
        pytest.skip(f"real CT data not found at {folder} (../shared is absent in a plain clone)")
    facts = json.loads((REAL_DATA / f"{name}.json").read_text())
    return folder, facts


@pytest.fixture(params=REAL_SCANS)
def real_scan_dir(request) -> tuple[Path, dict]:
    """Each real scan folder in turn, with its JSON facts (shape_zyx, dtype, spacing_zyx_mm...)."""
    return real_scan(request.param)


@pytest.fixture
def real_multipage_tif() -> Path:
    path = REAL_DATA / "vtkjs_headsq_ct_multipage.tif"
    if not path.is_file():
        pytest.skip(f"real CT data not found at {path} (../shared is absent in a plain clone)")
    return path


def pytest_configure(config) -> None:
    """CI sets CTSTACK_REQUIRE_RUST=1: a broken build must not pass on the numpy fallback."""
    import os

    if os.environ.get("CTSTACK_REQUIRE_RUST") == "1":
        import ctstack

        if ctstack.backend() != "rust":
            raise pytest.UsageError(
                "CTSTACK_REQUIRE_RUST=1 but the Rust extension is not active "
                f"(backend: {ctstack.backend()}); the build is broken"
            )
