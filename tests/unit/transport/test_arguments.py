"""Bad constructor arguments and out-of-order calls fail with a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgecloud.transport import (
    SessionClient,
    SessionServer,
    Ticket,
    TicketError,
    TransportError,
)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # no port in bind
        ({"bind": "127.0.0.1"}, "bind='127.0.0.1'"),
        # listening everywhere gives clients no address to dial
        ({"bind": "0.0.0.0:0"}, "bind='0.0.0.0:0'.*advertise"),
        # same for IPv6
        ({"bind": "[::]:0"}, r"bind='\[::\]:0'.*advertise"),
        # advertise is a host, its port is the bound one
        ({"advertise": "edge.example:9000"}, "without a port"),
        # a wildcard is not dialable
        ({"bind": "0.0.0.0:0", "advertise": "0.0.0.0"}, "wildcard"),
        # gRPC sizes are int32
        ({"max_message_bytes": 1 << 31}, "max_message_bytes"),
        # zero-byte limit
        ({"max_message_bytes": 0}, "max_message_bytes"),
        # no sessions at all
        ({"max_sessions": 0}, "max_sessions"),
        # a hello must have some time
        ({"hello_timeout": 0}, "hello_timeout"),
        # a tls_dir without the files
        ({"tls_dir": Path("/nonexistent-certs")}, r"ca\.crt is missing"),
    ],
)
def test_server_arguments_are_checked(kwargs: dict[str, Any], match: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        SessionServer(**kwargs)


def test_a_wildcard_bind_with_advertise_is_fine() -> None:
    # Execute
    server = SessionServer(bind="0.0.0.0:0", advertise="10.0.0.5")

    # Assert: not started, so no endpoint yet
    with pytest.raises(TransportError, match="not started"):
        _ = server.endpoint


def test_announce_needs_a_started_server() -> None:
    # Prepare
    server = SessionServer()

    # Execute / Assert
    with pytest.raises(TransportError, match="not started"):
        server.announce(run_id=1, node_id=1, ttl=10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # Flower ids are unsigned 64-bit
        ({"node_id": -1}, "node_id"),
        # ... and fit in 64 bits
        ({"run_id": 1 << 64}, "run_id"),
        # a bool is not an id
        ({"node_id": True}, "node_id"),
        # no time to connect
        ({"connect_timeout": 0}, "connect_timeout"),
        # not a certificate
        ({"ca_pem": b"garbage"}, "ca_pem"),
        # zero-byte limit
        ({"max_message_bytes": 0}, "max_message_bytes"),
    ],
)
def test_client_arguments_are_checked(
    ticket: Ticket, kwargs: dict[str, Any], match: str
) -> None:
    # Prepare
    arguments: dict[str, Any] = {"run_id": 1, "node_id": 2, **kwargs}

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        SessionClient(ticket, **arguments)


def test_client_calls_before_connect_say_so(ticket: Ticket) -> None:
    # Prepare
    client = SessionClient(ticket, run_id=1, node_id=2)

    # Execute / Assert
    with pytest.raises(TransportError, match="connect"):
        client.send(b"x")
    with pytest.raises(TransportError, match="connect"):
        client.receive(0.0)
    client.close()
    client.close()  # idempotent


def test_an_expired_ticket_is_refused_before_dialling(ticket: Ticket) -> None:
    # Prepare: the endpoint does not exist; an attempt to dial would say so instead
    expired = Ticket.from_config({**ticket.to_config(), "session-expires-at": 1.0})
    client = SessionClient(expired, run_id=1, node_id=2)

    # Execute / Assert
    with pytest.raises(TicketError, match="expired"):
        client.connect()
    with pytest.raises(TransportError, match="already called"):
        client.connect()
