"""The request server with a fake handler and a fake send: one reply per request, cancelled
requests unread and unanswered, superseded ones answered empty, errors answered, reads off the
calling thread, and a server that stops on close and when its owner goes."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from ctstack.errors import InvalidArgument
from ctstack.jupyter._server import TileServer, weak_handler, weak_sender


class Fake:
    """A handler that can be held at a gate, and a send that records."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.read: list[int] = []
        self.threads: set[int] = set()
        self.sent: list[tuple[dict, list]] = []
        self.cond = threading.Condition()

    def handle(self, content: dict) -> tuple[dict, list]:
        self.gate.wait(10)
        self.threads.add(threading.get_ident())
        self.read.append(content["id"])
        if content.get("fail") == "bad":
            raise InvalidArgument("plane must be 0..3")
        if content.get("fail") == "bug":
            raise ZeroDivisionError("oops")
        return {"type": "tiles", "id": content["id"], "tiles": [{"r": 0}]}, [b"abcd"]

    def send(self, content: dict, buffers: list) -> None:
        with self.cond:
            self.sent.append((content, buffers))
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 10) -> list[dict]:
        end = time.monotonic() + timeout
        with self.cond:
            while len(self.sent) < n:
                assert self.cond.wait(max(end - time.monotonic(), 0)), f"{len(self.sent)} of {n}"
        return [c for c, _ in self.sent]


def req(i: int, view: str = "xy", level: int = 0, plane: int = 0, **extra) -> dict:
    return {"type": "tiles", "id": i, "view": view, "level": level, "plane": plane, **extra}


@pytest.fixture
def fake():
    return Fake()


@pytest.fixture
def server(fake):
    s = TileServer(fake.handle, fake.send)
    yield s
    s.close()


def test_one_reply_per_request_read_off_the_calling_thread(fake, server):
    for i in range(1, 6):
        server.submit(req(i, plane=0))  # same plane: nothing superseded
    replies = fake.wait(5)
    time.sleep(0.1)
    assert len(fake.sent) == 5 and [r["id"] for r in replies] == [1, 2, 3, 4, 5]
    assert fake.threads and threading.get_ident() not in fake.threads
    assert server.stats.threads == fake.threads
    stats = server.stats.as_dict()
    assert stats["requests"] == stats["messages"] == stats["tiles"] == 5
    assert stats["bytes"] == 20


def test_cancelled_requests_are_not_read_nor_answered(fake, server):
    fake.gate.clear()  # hold the server on request 1
    server.submit(req(1))
    time.sleep(0.05)
    server.submit(req(2))
    server.submit(req(3))
    server.cancel([2, 99, "x"])  # unknown ids are ignored
    server.cancel("not a list")
    fake.gate.set()
    replies = fake.wait(2)
    time.sleep(0.1)
    assert [r["id"] for r in replies] == [1, 3] and len(fake.sent) == 2
    assert 2 not in fake.read and server.stats.cancelled == 1


def test_a_request_elsewhere_supersedes_older_unread_ones_of_its_view(fake, server):
    fake.gate.clear()
    server.submit(req(1, plane=0))
    time.sleep(0.05)  # 1 is being read
    server.submit(req(2, plane=10))  # the user moves on ...
    server.submit(req(3, "xz", plane=10))  # another view is not affected
    server.submit(req(4, level=3, plane=2))  # coarse: level-0 planes 16..23
    server.submit(req(5, level=0, plane=17))  # fine, inside the coarse one: both kept
    fake.gate.set()
    replies = {r["id"]: r for r in fake.wait(5)}
    assert sorted(replies) == [1, 2, 3, 4, 5]
    assert replies[2]["dropped"] is True and replies[2]["tiles"] == []  # answered, not read
    assert 2 not in fake.read
    assert all("dropped" not in replies[i] for i in (1, 3, 4, 5))
    assert server.stats.dropped == 1


def test_errors_are_replies(fake, server):
    server.submit(req(1, fail="bad"))
    server.submit(req(2, fail="bug"))
    server.submit(req(3))
    replies = fake.wait(3)
    assert replies[0] == {"type": "error", "id": 1, "message": "plane must be 0..3"}
    assert replies[1]["type"] == "error" and "ZeroDivisionError" in replies[1]["message"]
    assert replies[2]["type"] == "tiles"  # the thread lives on
    assert server.stats.errors == 2


def test_close_stops_the_thread_and_later_requests(fake):
    server = TileServer(fake.handle, fake.send)
    assert server.alive
    server.close()
    assert not server.alive
    server.submit(req(1))
    time.sleep(0.05)
    assert fake.sent == [] and server.stats.requests == 0


def test_a_failed_send_stops_the_server(fake):
    def broken(content, buffers):
        raise RuntimeError("comm closed")

    server = TileServer(fake.handle, broken)
    server.submit(req(1))
    for _ in range(100):
        if not server.alive:
            break
        time.sleep(0.02)
    assert not server.alive


def test_the_server_does_not_keep_its_owner_alive(fake):
    class Owner:
        def handle(self, content):
            return fake.handle(content)

        def send(self, content, buffers):
            fake.send(content, buffers)

    owner = Owner()
    server = TileServer(weak_handler(owner, "handle"), weak_sender(owner, "send"))
    server.submit(req(1))
    fake.wait(1)
    del owner
    gc.collect()
    server.submit(req(2))  # no owner: the reply cannot be sent, so the server stops
    for _ in range(100):
        if not server.alive:
            break
        time.sleep(0.02)
    assert not server.alive and len(fake.sent) == 1


def test_displays_do_not_supersede_each_other(fake, server):
    fake.gate.clear()
    server.submit(req(1, plane=0))
    time.sleep(0.05)
    server.submit(req(2, plane=10, client=1))
    server.submit(req(3, plane=20, client=2))  # another display of the widget
    fake.gate.set()
    replies = fake.wait(3)
    assert all("dropped" not in r for r in replies)
