"""The viewer in a real IPython kernel, driven over the Jupyter protocol as a frontend would
(no browser): tile replies sent from the server thread and trait updates sent from the build
thread reach the frontend, one message per request, with the tiles as buffers."""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

SETUP = """
import warnings; warnings.simplefilter("ignore")
import ctstack
from ctstack.sample import write_phantom_stack
write_phantom_stack({folder!r}, (6, 24, 1030), seed=2)
v = ctstack.view({folder!r}, layout="xy", cache_dir={cache!r})
print(v.comm.comm_id)
"""


@pytest.fixture(scope="module")
def kernel():
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


SEEN: list[dict[str, Any]] = []  # comm messages that arrived while a cell ran


def run(kc: Any, code: str) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "comm_msg":
            SEEN.append(msg)
        elif msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, timeout=120, output_hook=hook)
    assert reply["content"]["status"] == "ok", "".join(out)
    return "".join(out).strip()


def test_replies_from_background_threads_reach_the_frontend(kernel, tmp_path):
    comm_id = run(kernel, SETUP.format(folder=str(tmp_path / "s"), cache=str(tmp_path / "c")))

    def messages(until: Any) -> None:
        end = time.monotonic() + 60
        while not until() and time.monotonic() < end:
            try:
                msg = SEEN.pop(0) if SEEN else kernel.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["msg_type"] == "comm_msg" and msg["content"]["comm_id"] == comm_id:
                data = msg["content"]["data"]
                if data.get("method") == "custom":
                    replies[data["content"]["id"]] = (data["content"], msg["buffers"])
                elif data.get("method") == "update" and len(data["state"].get("levels", [])) > 1:
                    levels.extend(data["state"]["levels"])  # sent by the build thread

    replies: dict[int, tuple[dict, list]] = {}
    levels: list = []
    messages(lambda: levels)
    assert [lv["shape"] for lv in levels] == [[6, 24, 1030], [3, 12, 515], [2, 6, 258]]
    generation = int(run(kernel, "print(v.generation)"))
    for i in (1, 2):
        content = {"type": "tiles", "id": i, "view": "xy", "level": 0, "plane": 2,
                   "tiles": [[0, 0], [0, 4]], "generation": generation}  # fmt: skip
        data = {"method": "custom", "content": content}
        kernel.shell_channel.send(
            kernel.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        )
    messages(lambda: len(replies) == 2)
    assert sorted(replies) == [1, 2]
    for content, buffers in replies.values():
        assert content["type"] == "tiles" and content["dtype"] == "uint16"
        assert [len(b) for b in buffers] == [24 * 256 * 2, 24 * 6 * 2]
    stats = run(kernel, "print(v.stats['messages'], v.stats['requests'])")
    assert stats == "2 2"
    # replies came from the server thread, not the kernel's main thread
    threads = run(
        kernel,
        "import threading; print(threading.main_thread().ident in v._server.stats.threads)",
    )
    assert threads == "False"
    run(kernel, "v.close(); print(v._server.alive)")
