"""Run a child Python script in a private mount namespace (``unshare -m``), so a small tmpfs
(a disk that really fills) or a read-only bind mount exists for that child only."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

needs_private_mount = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="a private mount namespace needs root and unshare(1)",
)


def tmpfs(folder: Path, size: str) -> str:
    """The shell command mounting a tmpfs of ``size`` (e.g. ``"1m"``) on ``folder``."""
    return f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))}"


def read_only(folder: Path) -> str:
    """The shell command making ``folder`` a read-only bind mount of itself."""
    f = shlex.quote(str(folder))
    return f"mount --bind {f} {f} && mount -o remount,bind,ro {f}"


def run_child(
    tmp_path: Path, mount: str, source: str, *args: object, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Write ``source`` to a script, then run ``mount && python script args`` unshared."""
    script = tmp_path / "child.py"
    script.write_text(source)
    call = " ".join(shlex.quote(str(a)) for a in (sys.executable, script, *args))
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", f"{mount} && {call}"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
