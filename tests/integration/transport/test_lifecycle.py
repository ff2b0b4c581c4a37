"""Endpoint lifecycle: stop ends everything, a killed client process is dropped."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from edgecloud.transport import (
    SessionClient,
    SessionClosed,
    SessionServer,
    TransportError,
)

from .conftest import Connect


def test_stop_ends_every_session_and_frees_the_port(
    clients: list[SessionClient],
) -> None:
    # Prepare: two connected sessions and one nobody connected to
    server = SessionServer()
    server.start()
    port = server.endpoint.rsplit(":", 1)[1]
    open_pairs = []
    for node in range(2):
        ticket, session = server.announce(run_id=1, node_id=node, ttl=30)
        client = SessionClient(ticket, run_id=1, node_id=node)
        clients.append(client)
        client.connect()
        open_pairs.append((session, client))
    _, waiting = server.announce(run_id=1, node_id=9, ttl=30)

    # Execute
    server.stop()
    server.stop()  # idempotent

    # Assert
    for session, client in open_pairs:
        with pytest.raises(SessionClosed, match="endpoint stopped"):
            client.receive(5)
        with pytest.raises(SessionClosed, match="endpoint stopped"):
            session.receive(5)
        with pytest.raises(SessionClosed):
            session.send(b"x")
    with pytest.raises(SessionClosed, match="endpoint stopped"):
        waiting.wait_connected(1)
    with pytest.raises(TransportError, match="stopped"):
        server.announce(run_id=1, node_id=3, ttl=30)
    with SessionServer(bind=f"127.0.0.1:{port}") as again:
        assert again.endpoint == f"127.0.0.1:{port}"


def test_a_killed_client_process_is_dropped_and_others_go_on(
    server: SessionServer, connect: Connect
) -> None:
    # Prepare: a real client process, and one in this process
    ticket, session = server.announce(run_id=1, node_id=1, ttl=30)
    other, other_client, _ = connect(node_id=2)
    code = textwrap.dedent(
        f"""
        import time
        from edgecloud.transport import SessionClient, Ticket
        client = SessionClient(Ticket.from_config({ticket.to_config()!r}),
                               run_id=1, node_id=1)
        client.connect()
        client.send(b"up")
        time.sleep(60)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert session.receive(30) == b"up"

        # Execute
        process.kill()
        process.wait(10)

        # Assert
        with pytest.raises(SessionClosed, match="client disconnected"):
            session.receive(10)
    finally:
        process.kill()
        process.wait(10)
    other_client.send(b"still here")
    assert other.receive(5) == b"still here"
