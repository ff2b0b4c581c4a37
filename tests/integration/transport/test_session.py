"""One session end to end over real TLS gRPC: keys, order, finish, close, timeouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord

from edgecloud.channel import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    FrameContext,
    SecureChannel,
)
from edgecloud.deploy.certificates import generate_tls
from edgecloud.transport import (
    SessionClient,
    SessionClosed,
    SessionServer,
    Ticket,
    TransportError,
)

from .conftest import Connect


def test_ticket_over_a_config_record_opens_a_session_with_matching_keys(
    server: SessionServer, clients: list[SessionClient]
) -> None:
    # Prepare: the ticket travels the way the workflow sends it
    ticket, session = server.announce(run_id=3, node_id=11, ttl=30)
    record = ConfigRecord(ticket.to_config())
    client = SessionClient(Ticket.from_config(record), run_id=3, node_id=11)
    clients.append(client)

    # Execute
    client_keys = client.connect()
    session.wait_connected(5)

    # Assert
    assert ticket.endpoint == server.endpoint and ticket.ca_pem == server.ca_pem
    assert session.connected and session.node_id == 11
    assert session.keys.send_key == client_keys.recv_key
    assert session.keys.recv_key == client_keys.send_key
    assert session.keys.send_key != session.keys.recv_key


def test_sealed_frames_flow_both_ways_in_order(connect: Connect) -> None:
    # Prepare
    session, client, client_keys = connect()
    server_channel = SecureChannel(session.keys, send_direction=SERVER_TO_CLIENT)
    client_channel = SecureChannel(client_keys, send_direction=CLIENT_TO_SERVER)
    rng = np.random.default_rng(0)

    # Execute: 30 steps of activations down, gradients up
    for step in range(30):
        context = FrameContext(7, 1, "train.split_step", 1, step)
        acts = rng.normal(size=(8, 64)).astype(np.float32)
        session.send(server_channel.seal({"acts": acts}, context))
        opened = client_channel.open(client.receive(5) or b"", context)
        client.send(client_channel.seal({"grads": opened["acts"] * 2}, context))
        grads = server_channel.open(session.receive(5), context)["grads"]

        # Assert
        np.testing.assert_array_equal(grads, acts * 2)


def test_many_messages_of_mixed_sizes_keep_their_order(connect: Connect) -> None:
    # Prepare: empty, tiny and 256 KiB messages; all queued before any is read
    session, client, _ = connect()
    messages = [bytes([i % 251]) * (i * 997 % 262_144) for i in range(60)]
    messages[5] = b""

    # Execute
    for message in messages:
        session.send(message)
        client.send(message[::-1])
    down = [client.receive(5) for _ in messages]
    up = [session.receive(5) for _ in messages]

    # Assert
    assert down == messages
    assert up == [m[::-1] for m in messages]


def test_finish_then_close_ends_both_sides_cleanly(connect: Connect) -> None:
    # Prepare
    session, client, _ = connect()

    # Execute: the client's last message, its half-close, then the server's reply
    client.send(b"last from client")
    client.finish()
    received = session.receive(5)
    with pytest.raises(SessionClosed, match="client finished its stream"):
        session.receive(5)
    session.send(b"last from server")
    session.close()
    session.close()  # idempotent

    # Assert
    assert received == b"last from client" and session.client_finished
    assert client.receive(5) == b"last from server"
    assert client.receive(5) is None
    assert client.receive(0) is None  # stays ended
    with pytest.raises(TransportError, match=r"finish\(\) was called"):
        client.send(b"too late")
    with pytest.raises(SessionClosed, match="server closed the session"):
        session.send(b"too late")


def test_server_close_without_finish_ends_the_client_stream(connect: Connect) -> None:
    # Prepare
    session, client, _ = connect()

    # Execute
    session.send(b"bye")
    session.close()

    # Assert
    assert client.receive(5) == b"bye"
    assert client.receive(5) is None
    with pytest.raises(SessionClosed, match="closed the stream"):
        client.send(b"too late")
    with pytest.raises(SessionClosed, match="server closed the session"):
        session.receive(5)


def test_client_disconnect_is_reported_as_such(connect: Connect) -> None:
    # Prepare
    session, client, _ = connect()
    client.send(b"one")
    assert session.receive(5) == b"one"

    # Execute: the client goes away without finish()
    client.close()

    # Assert
    with pytest.raises(SessionClosed, match="client disconnected"):
        session.receive(5)
    assert not session.client_finished
    with pytest.raises(SessionClosed):
        session.receive(0)  # stays ended


def test_receive_timeouts_leave_the_session_usable(connect: Connect) -> None:
    # Prepare
    session, client, _ = connect()

    # Execute / Assert
    with pytest.raises(TimeoutError, match="no message"):
        session.receive(0.05)
    with pytest.raises(TimeoutError, match="no message"):
        client.receive(0.05)
    client.send(b"late")
    session.send(b"late too")
    assert session.receive(5) == b"late"
    assert client.receive(5) == b"late too"


def test_messages_sent_before_the_client_connects_arrive_after_acceptance(
    server: SessionServer, clients: list[SessionClient]
) -> None:
    # Prepare
    ticket, session = server.announce(run_id=1, node_id=4, ttl=30)
    session.send(b"early")
    with pytest.raises(TransportError, match="no keys yet"):
        _ = session.keys
    client = SessionClient(ticket, run_id=1, node_id=4)
    clients.append(client)

    # Execute
    client.connect()

    # Assert
    assert client.receive(5) == b"early"


def test_wait_connected_times_out_when_nobody_connects(server: SessionServer) -> None:
    # Prepare
    _, session = server.announce(run_id=1, node_id=5, ttl=30)

    # Execute / Assert
    with pytest.raises(TimeoutError, match="no client connected"):
        session.wait_connected(0.1)
    session.close()
    with pytest.raises(SessionClosed, match="server closed"):
        session.wait_connected(0.1)


def test_a_tls_dir_from_deploy_certs_serves_sessions(
    tmp_path: Path, clients: list[SessionClient]
) -> None:
    # Prepare: the files `python -m edgecloud.deploy certs` writes
    files = generate_tls(tmp_path / "certs", ("localhost", "127.0.0.1"))

    with SessionServer(bind="127.0.0.1:0", tls_dir=files.ca_cert.parent) as server:
        ticket, session = server.announce(run_id=1, node_id=1, ttl=30)
        client = SessionClient(
            ticket, run_id=1, node_id=1, ca_pem=files.ca_cert.read_bytes()
        )
        clients.append(client)

        # Execute
        client.connect()
        client.send(b"over deploy certs")

        # Assert
        assert ticket.ca_pem == files.ca_cert.read_bytes()
        assert session.receive(5) == b"over deploy certs"
        client.close()
