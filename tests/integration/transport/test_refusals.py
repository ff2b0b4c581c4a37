"""A refused hello changes nothing: the rightful client still connects afterwards."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from edgecloud.channel import Handshake
from edgecloud.deploy.certificates import tls_material
from edgecloud.transport import (
    EndpointUnreachable,
    ServerSession,
    SessionClient,
    SessionClosed,
    SessionRefused,
    SessionServer,
    Ticket,
    TicketError,
)
from edgecloud.transport.wire import METHOD, Hello, encode_hello, hello_proof


def _connect(ticket: Ticket, clients: list[SessionClient], **kwargs: Any) -> None:
    arguments: dict[str, Any] = {"run_id": 7, "node_id": 1, **kwargs}
    client = SessionClient(ticket, **arguments)
    clients.append(client)
    client.connect()


def _rightful_client_still_connects(
    ticket: Ticket, session: ServerSession, clients: list[SessionClient]
) -> None:
    assert not session.connected
    _connect(ticket, clients)
    session.wait_connected(5)
    session.send(b"welcome")
    assert clients[-1].receive(5) == b"welcome"


@pytest.mark.parametrize(
    ("forge", "client_ids", "reason"),
    [
        # a guessed token: the proof cannot match
        ({"token": b"\x01" * 32}, {}, "proof does not match"),
        # a session id the endpoint never announced
        ({"session_id": "f" * 32}, {}, "unknown session"),
        # the right ticket presented for another node: keys would not match
        ({}, {"node_id": 2}, "issued for run 7 node 1"),
        # ... or for another run
        ({}, {"run_id": 8}, "issued for run 7 node 1"),
    ],
)
def test_a_refused_hello_does_not_consume_the_ticket(
    server: SessionServer,
    clients: list[SessionClient],
    forge: dict[str, Any],
    client_ids: dict[str, int],
    reason: str,
) -> None:
    # Prepare
    ticket, session = server.announce(run_id=7, node_id=1, ttl=30)

    # Execute / Assert
    with pytest.raises(SessionRefused, match=reason):
        _connect(dataclasses.replace(ticket, **forge), clients, **client_ids)
    _rightful_client_still_connects(ticket, session, clients)


def test_an_expired_ticket_is_refused_by_the_server(
    server: SessionServer, clients: list[SessionClient]
) -> None:
    # Prepare: the client's own expiry check is bypassed, the server's is not
    ticket, session = server.announce(run_id=7, node_id=1, ttl=0.2)
    time.sleep(0.3)

    # Execute / Assert
    with pytest.raises(SessionRefused, match="expired"):
        _connect(dataclasses.replace(ticket, expires_at=time.time() + 60), clients)
    assert not session.connected
    with pytest.raises(TimeoutError):
        session.wait_connected(0.05)


def test_a_client_refuses_its_expired_ticket_without_touching_the_session(
    server: SessionServer, clients: list[SessionClient]
) -> None:
    # Prepare
    ticket, session = server.announce(run_id=7, node_id=1, ttl=30)

    # Execute / Assert
    with pytest.raises(TicketError, match="expired"):
        _connect(dataclasses.replace(ticket, expires_at=time.time() - 1), clients)
    _rightful_client_still_connects(ticket, session, clients)


def test_a_used_ticket_is_refused_while_open_and_after_close(
    server: SessionServer, clients: list[SessionClient]
) -> None:
    # Prepare
    ticket, session = server.announce(run_id=7, node_id=1, ttl=30)
    _connect(ticket, clients)
    first = clients[-1]

    # Execute / Assert: a second connection while the first is open
    with pytest.raises(SessionRefused, match="already used"):
        _connect(ticket, clients)
    first.send(b"still mine")
    assert session.receive(5) == b"still mine"

    # ... and after the session closed
    session.close()
    assert first.receive(5) is None
    with pytest.raises(SessionRefused, match="already used"):
        _connect(ticket, clients)


def test_concurrent_hellos_with_one_ticket_open_one_session(
    server: SessionServer, clients: list[SessionClient]
) -> None:
    # Prepare: six clients race with the same ticket
    ticket, session = server.announce(run_id=7, node_id=1, ttl=30)
    racers = [SessionClient(ticket, run_id=7, node_id=1) for _ in range(6)]
    clients.extend(racers)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(racers))

    def race(client: SessionClient) -> None:
        start.wait()
        try:
            client.connect()
            outcome = "connected"
        except SessionRefused as err:
            outcome = "refused" if "already used" in str(err) else str(err)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=race, args=(c,)) for c in racers]

    # Execute
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # Assert
    assert sorted(outcomes) == ["connected"] + ["refused"] * 5
    session.wait_connected(5)


def test_a_client_trusting_another_ca_cannot_connect(
    server: SessionServer, clients: list[SessionClient]
) -> None:
    # Prepare
    ticket, session = server.announce(run_id=7, node_id=1, ttl=30)
    other_ca = tls_material(("127.0.0.1",)).ca_pem

    # Execute / Assert: the pinned CA wins over the ticket's
    with pytest.raises(EndpointUnreachable, match=r"(?i)handshake|certificate"):
        _connect(ticket, clients, ca_pem=other_ca)
    # a ticket carrying another CA (a forged endpoint) fails the same way
    with pytest.raises(EndpointUnreachable, match=r"(?i)handshake|certificate"):
        _connect(dataclasses.replace(ticket, ca_pem=other_ca), clients)
    _rightful_client_still_connects(ticket, session, clients)


def test_no_listener_is_unreachable(clients: list[SessionClient]) -> None:
    # Prepare: an endpoint that existed and stopped (its port is free now)
    with SessionServer() as gone:
        ticket, _ = gone.announce(run_id=7, node_id=1, ttl=30)

    # Execute / Assert
    with pytest.raises(EndpointUnreachable, match="cannot reach"):
        _connect(ticket, clients, connect_timeout=5)


def test_a_listener_that_never_answers_times_out_as_unreachable(
    clients: list[SessionClient], ticket_for_port: Callable[[int], Ticket]
) -> None:
    # Prepare: TCP connects (the backlog accepts) but no TLS handshake ever comes
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        ticket = ticket_for_port(listener.getsockname()[1])

        # Execute
        started = time.monotonic()
        with pytest.raises(EndpointUnreachable, match=r"no answer .* within 0\.5 s"):
            _connect(ticket, clients, connect_timeout=0.5)

    # Assert
    assert time.monotonic() - started < 3


@pytest.fixture
def ticket_for_port(server: SessionServer) -> Callable[[int], Ticket]:
    """A well-formed ticket of ``server`` that points at another port."""

    def _ticket(port: int) -> Ticket:
        ticket, session = server.announce(run_id=7, node_id=1, ttl=30)
        session.close()
        return dataclasses.replace(ticket, endpoint=f"127.0.0.1:{port}")

    return _ticket


@pytest.fixture
def raw_channel(server: SessionServer) -> Iterator[Any]:
    """A bare gRPC channel to the endpoint, for frames SessionClient never sends."""
    channel = grpc.secure_channel(
        server.endpoint, grpc.ssl_channel_credentials(server.ca_pem)
    )
    yield channel
    channel.close()


def _raw_hello(channel: Any, frame: bytes) -> Any:
    with pytest.raises(grpc.RpcError) as info:
        next(channel.stream_stream(METHOD)(iter([frame])))
    return info.value


@pytest.mark.parametrize(
    "frame",
    [
        # an empty message
        b"",
        # a data frame before any hello
        b"\x03payload",
        # a truncated hello
        b"\x01\x01" + b"\x00" * 30,
        # a hello from a future protocol version
        b"\x01\x09" + b"\x00" * 200,
    ],
)
def test_malformed_hellos_are_refused_and_the_endpoint_keeps_serving(
    server: SessionServer,
    clients: list[SessionClient],
    raw_channel: Any,
    frame: bytes,
) -> None:
    # Prepare
    ticket, session = server.announce(run_id=7, node_id=1, ttl=30)

    # Execute
    error = _raw_hello(raw_channel, frame)

    # Assert
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("malformed hello")
    _rightful_client_still_connects(ticket, session, clients)


def test_a_valid_proof_with_a_garbage_key_does_not_consume_the_ticket(
    server: SessionServer, clients: list[SessionClient], raw_channel: Any
) -> None:
    # Prepare: only the token holder can build this; the key is not X25519
    ticket, session = server.announce(run_id=7, node_id=1, ttl=30)
    garbage = b"\x07" * 44
    hello = Hello(7, 1, ticket.session_id, garbage, b"")
    proof = hello_proof(ticket.token, ticket.session_id, garbage)

    # Execute
    error = _raw_hello(
        raw_channel, encode_hello(dataclasses.replace(hello, proof=proof))
    )

    # Assert
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "client key rejected" in error.details()
    _rightful_client_still_connects(ticket, session, clients)


def test_a_replayed_hello_is_refused(
    server: SessionServer, clients: list[SessionClient], raw_channel: Any
) -> None:
    # Prepare: a hello captured from the rightful client's connection
    ticket, session = server.announce(run_id=7, node_id=1, ttl=30)
    client_public = Handshake().public_bytes
    proof = hello_proof(ticket.token, ticket.session_id, client_public)
    captured = encode_hello(Hello(7, 1, ticket.session_id, client_public, proof))
    assert next(raw_channel.stream_stream(METHOD)(iter([captured]))).startswith(b"\x02")
    session.wait_connected(5)

    # Execute
    error = _raw_hello(raw_channel, captured)

    # Assert
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "already used" in error.details()


def test_a_connection_that_never_says_hello_is_dropped(
    clients: list[SessionClient],
) -> None:
    # Prepare
    with SessionServer(hello_timeout=0.3) as server:
        ticket, session = server.announce(run_id=7, node_id=1, ttl=30)
        channel = grpc.secure_channel(
            server.endpoint, grpc.ssl_channel_credentials(server.ca_pem)
        )
        silent = threading.Event()

        def nothing() -> Iterator[bytes]:
            silent.wait(5)
            yield from ()

        # Execute
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            next(channel.stream_stream(METHOD)(nothing()))
        waited = time.monotonic() - started
        silent.set()
        channel.close()

        # Assert
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no hello within 0.3 s" in info.value.details()
        assert waited < 3
        _rightful_client_still_connects(ticket, session, clients)
        clients[-1].close()


@pytest.mark.parametrize(
    "frames",
    [
        # a frame kind the protocol does not have
        [b"\x09junk"],
        # a second hello
        [b"\x01again"],
        # an empty message (no kind byte)
        [b""],
        # data after the client said it had finished
        [b"\x04", b"\x03late"],
    ],
)
def test_a_bad_frame_after_acceptance_ends_only_that_session(
    server: SessionServer,
    clients: list[SessionClient],
    raw_channel: Any,
    frames: list[bytes],
) -> None:
    # Prepare: a raw client that says a proper hello, and a bystander session
    ticket, session = server.announce(run_id=7, node_id=1, ttl=30)
    client_public = Handshake().public_bytes
    proof = hello_proof(ticket.token, ticket.session_id, client_public)
    hello = encode_hello(Hello(7, 1, ticket.session_id, client_public, proof))
    release = threading.Event()

    def requests() -> Iterator[bytes]:
        yield hello
        release.wait(5)
        yield from frames
        release.wait(5)  # keep the stream open: the server must end it

    bystander_ticket, bystander = server.announce(run_id=7, node_id=2, ttl=30)
    _connect(bystander_ticket, clients, node_id=2)
    call = raw_channel.stream_stream(METHOD)(requests())
    assert next(call).startswith(b"\x02")

    # Execute
    release.set()

    # Assert
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unexpected frame" in info.value.details()
    # no data frame was valid; after a FIN the session reports the finish first
    with pytest.raises(SessionClosed, match=r"unexpected frame|finished its stream"):
        session.receive(5)
    clients[-1].send(b"unaffected")
    assert bystander.receive(5) == b"unaffected"
