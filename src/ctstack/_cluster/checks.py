"""Checks made on every worker before a cluster build or export starts.

Workers read the stack from its path and write straight into the shared temporary folder, so
each of them must see both (a shared filesystem) and run the same ctstack with the same kernel
backend (the results must be bit-identical to a local build). ``check_workers`` runs
:func:`probe` on every worker with ``client.run`` and raises ``ClusterError`` naming the first
worker and path that fail. The shared folder is proven by a probe file the client writes and
every worker must find (a node-local folder of the same name does not have it) and by a real
write from every worker (root ignores permission bits, so ``os.access`` proves nothing).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CTStackError

if TYPE_CHECKING:
    from distributed import Client


class ClusterError(CTStackError):
    """The cluster cannot run this build: a worker is missing a path, or runs other code."""


def probe(paths: Sequence[str], folder: str, token: str) -> dict[str, Any]:
    """Run on a worker: its ctstack version and backend, the paths it cannot see, and whether
    it sees the client's probe file in ``folder`` and can write there."""
    import socket

    import ctstack

    out: dict[str, Any] = {
        "version": ctstack.__version__,
        "backend": ctstack.backend(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "missing": [p for p in paths if not os.path.exists(p)],
        "folder": None,
    }
    if not os.path.isfile(os.path.join(folder, token)):
        out["folder"] = "does not see it (the folder is not on a filesystem shared with the client)"
        return out
    mine = os.path.join(folder, f"{token}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(mine, "w") as f:
            f.write("ctstack worker probe\n")
        os.unlink(mine)
    except OSError as exc:
        out["folder"] = f"cannot write there ({exc.strerror or exc})"
    return out


def check_workers(client: Client, paths: Sequence[Path | str], folder: Path) -> dict[str, Any]:
    """Probe every worker; raise ``ClusterError`` for the first one that cannot do the work.

    ``paths`` must be visible to every worker (the stack, its sources); ``folder`` (the
    shared temporary folder, already made by the client) must be visible and writable.
    Returns the probe results by worker address.
    """
    import ctstack

    if not client.scheduler_info().get("workers"):
        where = client.scheduler_info().get("address", "?")
        raise ClusterError(f"the cluster at {where} has no workers")
    token = f".probe-{secrets.token_hex(6)}"
    marker = folder / token
    marker.write_text("ctstack client probe\n")
    try:
        results = client.run(probe, [str(p) for p in paths], str(folder), token)
    finally:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
    hint = (
        "a cluster build needs the stack and the cache on a shared filesystem every worker mounts "
        "(pass cache_dir= or --cache-dir with a shared folder)"
    )
    for worker, info in sorted(results.items()):
        who = f"worker {worker} (host {info['host']}, pid {info['pid']})"
        if info["missing"]:
            raise ClusterError(f"{who} cannot see {info['missing'][0]}; {hint}")
        if info["folder"]:
            raise ClusterError(f"{who}: the cache folder {folder} {info['folder']}; {hint}")
        if info["version"] != ctstack.__version__:
            raise ClusterError(
                f"{who} runs ctstack {info['version']}, this client {ctstack.__version__}; "
                "install the same version everywhere"
            )
        if info["backend"] != ctstack.backend() or info["backend"] != "rust":
            raise ClusterError(
                f"{who} uses the {info['backend']} kernel backend, this client "
                f"{ctstack.backend()}; install ctstack with its Rust extension on every worker"
            )
    return dict(results)
