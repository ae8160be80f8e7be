"""``distributed`` is an optional extra: without it ``import ctstack``, a local build and the
CLI work, and asking for a cluster says what to install."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import sys
sys.modules["distributed"] = None  # as if the extra were not installed
import ctstack
from ctstack.cli import main
from ctstack.sample import write_phantom_stack

folder = sys.argv[1]
write_phantom_stack(folder, (20, 30, 26))
assert len(ctstack.open_stack(folder).build_pyramid(max_size=8)) == 3
assert main(["pyramid", folder, "--max-size", "8"]) == 0
sys.exit(main(["pyramid", folder, "--max-size", "8", "--workers", "2"]))
"""


def test_no_distributed_needed_without_a_cluster(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "stack")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "reused 2 level(s)" in run.stdout
    assert "pip install 'napari-ctstack[distributed]'" in run.stderr
    assert "Traceback" not in run.stderr
