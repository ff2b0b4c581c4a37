"""Real TLS gRPC endpoints on 127.0.0.1, stopped after each test, leaving no threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edgecloud.channel import SessionKeys
from edgecloud.transport import ServerSession, SessionClient, SessionServer

# grpc's process-wide completion-queue poller starts with the first aio server and
# lives as long as the process: it is not a per-server thread.
_PROCESS_WIDE = ("_poll_wrapper",)

Connect = Callable[..., tuple[ServerSession, SessionClient, SessionKeys]]


@pytest.fixture(autouse=True)
def no_threads_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        extra = [
            t
            for t in threading.enumerate()
            if t not in before and not any(p in t.name for p in _PROCESS_WIDE)
        ]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not extra, f"threads left behind: {[t.name for t in extra]}"


@pytest.fixture
def server() -> Iterator[SessionServer]:
    endpoint = SessionServer(hello_timeout=2.0)
    endpoint.start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def clients() -> Iterator[list[SessionClient]]:
    """Clients a test opened; closed at teardown (before the server stops)."""
    opened: list[SessionClient] = []
    yield opened
    for client in opened:
        client.close()


@pytest.fixture
def connect(server: SessionServer, clients: list[SessionClient]) -> Connect:
    """Announce a session for ``node_id`` and connect a client to it."""

    def _connect(
        node_id: int = 1, run_id: int = 7, **client_kwargs: Any
    ) -> tuple[ServerSession, SessionClient, SessionKeys]:
        ticket, session = server.announce(run_id=run_id, node_id=node_id, ttl=30)
        client = SessionClient(ticket, run_id=run_id, node_id=node_id, **client_kwargs)
        clients.append(client)
        keys = client.connect()
        session.wait_connected(5)
        return session, client, keys

    return _connect
