"""Shared fixtures: where the real CT scans live, and small helpers used across test modules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"
REAL_SCANS = ("vtkjs_headsq_ct", "niivue_ct_pitch_head", "vtkjs_lidc2_chest_ct")
# .ci/run sets this: there the real scans must be present, so their absence fails the run
REQUIRE_REAL_DATA = "CTSTACK_REQUIRE_REAL_DATA"


def missing_real_data(path: Path) -> None:
    """Skip (a user's plain clone has no ../shared) or, where real data is required, fail."""
    why = f"real CT data not found at {path} (../shared is absent in a plain clone)"
    if os.environ.get(REQUIRE_REAL_DATA) == "1":
        pytest.fail(f"{why}; {REQUIRE_REAL_DATA}=1 requires it", pytrace=False)
    pytest.skip(why)


def real_scan(name: str) -> tuple[Path, dict]:
    """Return the folder of one real scan and its JSON facts; skip or fail when it is absent."""
    folder = REAL_DATA / name
    if not folder.is_dir():
        missing_real_data(folder)
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
        missing_real_data(path)
    return path


def pytest_configure(config) -> None:
    """CI sets CTSTACK_REQUIRE_RUST=1: a broken build must not pass on the numpy fallback."""
    if os.environ.get("CTSTACK_REQUIRE_RUST") == "1":
        import ctstack

        if ctstack.backend() != "rust":
            raise pytest.UsageError(
                "CTSTACK_REQUIRE_RUST=1 but the Rust extension is not active "
                f"(backend: {ctstack.backend()}); the build is broken"
            )
