"""Bounded message sizes and session counts: an oversized message fails one session."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from edgecloud.transport import (
    ServerSession,
    SessionClient,
    SessionClosed,
    SessionServer,
    TransportError,
)

LIMIT = 1000


@pytest.fixture
def small_server() -> Iterator[SessionServer]:
    with SessionServer(max_message_bytes=LIMIT, max_sessions=3) as server:
        yield server


def _open(
    server: SessionServer, clients: list[SessionClient], node_id: int, limit: int
) -> tuple[ServerSession, SessionClient]:
    ticket, session = server.announce(run_id=1, node_id=node_id, ttl=30)
    client = SessionClient(ticket, run_id=1, node_id=node_id, max_message_bytes=limit)
    clients.append(client)
    client.connect()
    session.wait_connected(5)
    return session, client


@pytest.mark.parametrize(
    ("size", "server_reason"),
    [
        # just over: the server's own check names the limit
        (LIMIT + 1, f"over max_message_bytes={LIMIT}"),
        # far over: gRPC's limit stops it before it is buffered
        (5 * LIMIT, "max_message_bytes"),
    ],
)
def test_an_oversized_client_message_fails_only_its_session(
    small_server: SessionServer,
    clients: list[SessionClient],
    size: int,
    server_reason: str,
) -> None:
    # Prepare: a client allowed to send more than the server accepts, and a bystander
    big, big_client = _open(small_server, clients, node_id=1, limit=10 * LIMIT)
    other, other_client = _open(small_server, clients, node_id=2, limit=LIMIT)

    # Execute
    big_client.send(b"x" * size)

    # Assert
    with pytest.raises(SessionClosed, match=server_reason):
        big.receive(5)
    with pytest.raises(SessionClosed, match="RESOURCE_EXHAUSTED"):
        big_client.receive(5)
    other_client.send(b"y" * LIMIT)
    assert other.receive(5) == b"y" * LIMIT
    other.send(b"z")
    assert other_client.receive(5) == b"z"


def test_an_oversized_server_message_fails_only_that_client(
    small_server: SessionServer, clients: list[SessionClient]
) -> None:
    # Prepare: this client accepts less than the server may send
    session, client = _open(small_server, clients, node_id=1, limit=100)
    other, other_client = _open(small_server, clients, node_id=2, limit=LIMIT)

    # Execute
    session.send(b"x" * 101)

    # Assert
    with pytest.raises(SessionClosed, match="max_message_bytes=100"):
        client.receive(5)
    with pytest.raises(SessionClosed, match="disconnected"):
        session.receive(5)
    other.send(b"ok")
    assert other_client.receive(5) == b"ok"


def test_sending_over_ones_own_limit_is_a_value_error_and_loses_nothing(
    small_server: SessionServer, clients: list[SessionClient]
) -> None:
    # Prepare
    session, client = _open(small_server, clients, node_id=1, limit=LIMIT)

    # Execute / Assert
    with pytest.raises(ValueError, match="exceeds max_message_bytes"):
        client.send(b"x" * (LIMIT + 1))
    with pytest.raises(ValueError, match="exceeds max_message_bytes"):
        session.send(b"x" * (LIMIT + 1))
    with pytest.raises(TypeError, match="expected bytes"):
        client.send("text")  # type: ignore[arg-type]
    client.send(b"fits")
    session.send(b"fits too")
    assert session.receive(5) == b"fits"
    assert client.receive(5) == b"fits too"


def test_max_sessions_bounds_open_sessions_not_closed_ones(
    small_server: SessionServer,
) -> None:
    # Prepare
    sessions = [small_server.announce(run_id=1, node_id=n, ttl=30)[1] for n in range(3)]

    # Execute / Assert
    with pytest.raises(TransportError, match="max_sessions=3"):
        small_server.announce(run_id=1, node_id=3, ttl=30)
    sessions[0].close()
    small_server.announce(run_id=1, node_id=3, ttl=30)
    assert small_server.open_sessions == 3


def test_unconnected_sessions_expire_and_are_forgotten(
    small_server: SessionServer,
) -> None:
    # Prepare
    _, stale = small_server.announce(run_id=1, node_id=1, ttl=0.1)

    # Execute: the next announce prunes what is over
    small_server.announce(run_id=1, node_id=2, ttl=30)
    fresh_count = small_server.open_sessions
    time.sleep(0.15)
    small_server.announce(run_id=1, node_id=3, ttl=30)

    # Assert
    assert fresh_count == 2 and small_server.open_sessions == 2
    with pytest.raises(SessionClosed, match="expired before a client connected"):
        stale.wait_connected(1)
