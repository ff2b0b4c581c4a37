"""Sessions at once: no cross-talk, and a slow or dead client blocks no other."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from edgecloud.transport import (
    ServerSession,
    SessionClient,
    SessionClosed,
)

from .conftest import Connect


def _answer(client: SessionClient, node_id: int, delay: float = 0.0) -> None:
    """Client side of a step: reply to each message with node id + the message."""
    while (message := client.receive(10)) is not None:
        time.sleep(delay)
        client.send(node_id.to_bytes(2, "big") + message)


def _start_answering(
    clients: dict[int, SessionClient], delays: dict[int, float] | None = None
) -> list[threading.Thread]:
    threads = [
        threading.Thread(
            target=_answer, args=(client, node, (delays or {}).get(node, 0.0))
        )
        for node, client in clients.items()
    ]
    for thread in threads:
        thread.start()
    return threads


def _open_many(connect: Connect, nodes: range) -> tuple[dict, dict]:
    sessions: dict[int, ServerSession] = {}
    clients: dict[int, SessionClient] = {}
    for node in nodes:
        sessions[node], clients[node], _ = connect(node_id=node)
    return sessions, clients


def test_eight_sessions_in_lock_step_from_one_driver_thread(connect: Connect) -> None:
    # Prepare
    sessions, clients = _open_many(connect, range(8))
    threads = _start_answering(clients)

    # Execute: 200 steps; each step sends to every node, then receives from each
    replies: dict[int, list[bytes]] = {node: [] for node in sessions}
    for step in range(200):
        payload = step.to_bytes(4, "big") * 64
        for node, session in sessions.items():
            session.send(payload + bytes([node]))
        for node, session in sessions.items():
            replies[node].append(session.receive(10))
    for session in sessions.values():
        session.close()
    for thread in threads:
        thread.join(10)

    # Assert: each node got exactly its own messages, in order
    for node, got in replies.items():
        assert got == [
            node.to_bytes(2, "big") + step.to_bytes(4, "big") * 64 + bytes([node])
            for step in range(200)
        ]


def test_sessions_driven_from_worker_threads(connect: Connect) -> None:
    # Prepare
    sessions, clients = _open_many(connect, range(4))
    answering = _start_answering(clients)
    results: dict[int, bool] = {}

    def drive(node: int, session: ServerSession) -> None:
        ok = True
        for step in range(150):
            message = f"{node}:{step}".encode()
            session.send(message)
            ok &= session.receive(10) == node.to_bytes(2, "big") + message
        session.close()
        results[node] = ok

    drivers = [threading.Thread(target=drive, args=item) for item in sessions.items()]

    # Execute
    for thread in drivers:
        thread.start()
    for thread in drivers + answering:
        thread.join(20)

    # Assert
    assert results == dict.fromkeys(range(4), True)


def test_a_slow_and_a_dead_client_do_not_hold_up_the_others(
    connect: Connect,
) -> None:
    # Prepare: node 0 answers after 2 s, node 1 will disconnect, 2 and 3 are prompt
    sessions, clients = _open_many(connect, range(4))
    dead = clients.pop(1)
    threads = _start_answering(clients, delays={0: 2.0})
    dead.close()

    # Execute: one exchange with each prompt node, with the slow one pending
    started = time.monotonic()
    for session in sessions.values():
        # the dead one may or may not be noticed yet: either way it must not block
        with contextlib.suppress(SessionClosed):
            session.send(b"step")
    prompt = [sessions[n].receive(5) for n in (2, 3)]
    prompt_time = time.monotonic() - started

    # Assert
    assert prompt == [b"\x00\x02step", b"\x00\x03step"]
    assert prompt_time < 1.5
    with pytest.raises(SessionClosed, match="disconnected"):
        sessions[1].receive(5)
    with pytest.raises(TimeoutError):
        sessions[0].receive(0.1)
    assert sessions[0].receive(5) == b"\x00\x00step"
    for session in sessions.values():
        session.close()
    for thread in threads:
        thread.join(10)
