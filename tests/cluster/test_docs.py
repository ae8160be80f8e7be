"""docs/scale-out.md: the SLURMCluster example it shows renders a job script (not submitted)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "scale-out.md"


def marked_block(marker: str) -> str:
    """The first ```python block after the ``<!-- test: marker ...-->`` comment."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(
        r"<!-- test: " + re.escape(marker) + r".*?-->\s*```python\n(.*?)```", text, re.S
    )
    assert found, f"no python block marked {marker!r} in {DOC}"
    return found.group(1)


def test_the_slurm_job_script_renders(capsys):
    pytest.importorskip("dask_jobqueue")
    code = marked_block("slurm-cluster")
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # what a user pastes on a login node
    cluster = namespace["cluster"]
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    printed = capsys.readouterr().out
    assert script.strip() in printed
    assert script.startswith("#!/")
    for line in ("#SBATCH -J ctstack", "#SBATCH -p compute", "#SBATCH -A myproject",
                 "#SBATCH -t 02:00:00", "source /shared/envs/ctstack/bin/activate"):  # fmt: skip
        assert line in script, line
    assert "distributed.cli.dask_worker" in script and "--nworkers 8" in script
    assert "--nthreads 1" in script and "--lifetime 110m" in script
