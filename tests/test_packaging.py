"""The built wheel carries the extension and the napari manifest where npe2 looks for it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent)) or shutil.which(
        "maturin"
    )
    if maturin is None:
        pytest.skip("maturin is not installed in this environment")
    out = tmp_path_factory.mktemp("wheel")
    # Reuses rust/target from the editable install, so this is a relink, not a rebuild.
    subprocess.run(
        [maturin, "build", "--release", "--out", str(out), "--interpreter", sys.executable],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=900,
    )
    (found,) = out.glob("napari_ctstack-*.whl")
    return found


def test_wheel_carries_the_manifest_the_extension_and_the_stubs(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        manifest = zf.read("ctstack/napari.yaml").decode()
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_text = zf.read(entry_points).decode().replace(" ", "")
    assert manifest == (REPO / "napari.yaml").read_text()
    assert any(n.startswith("ctstack/_core") and n.endswith(".so") for n in names)
    assert "ctstack/_core.pyi" in names and "ctstack/py.typed" in names
    assert "[napari.manifest]\nnapari-ctstack=ctstack:napari.yaml" in entry_text
    assert "ctstack=ctstack.cli:main" in entry_text
