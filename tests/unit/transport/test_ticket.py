"""Tickets survive a real Flower ConfigRecord and every malformed field is named."""

from __future__ import annotations

import dataclasses

import pytest
from Crypto.PublicKey import ECC
from flwr.app import ConfigRecord

from edgecloud.channel import Handshake
from edgecloud.transport import TICKET_KEYS, Ticket, TicketError
from edgecloud.transport.ticket import join_endpoint, split_endpoint

_X25519_PRIVATE = ECC.generate(curve="curve25519").export_key(format="DER")
_P256_PUBLIC = ECC.generate(curve="p256").public_key().export_key(format="DER")


def test_ticket_round_trips_through_a_flower_config_record(ticket: Ticket) -> None:
    # Prepare
    record = ConfigRecord({**ticket.to_config(), "server-round": 3})

    # Execute
    back = Ticket.from_config(record)

    # Assert
    assert back == ticket
    assert set(ticket.to_config()) == set(TICKET_KEYS)
    assert all(key == key.lower() and "_" not in key for key in TICKET_KEYS)


def test_repr_leaves_the_token_out(ticket: Ticket) -> None:
    # Execute
    text = repr(ticket)

    # Assert
    assert ticket.session_id in text
    assert "token" not in text and repr(ticket.token) not in text


@pytest.mark.parametrize("key", TICKET_KEYS)
def test_missing_key_is_named(ticket: Ticket, key: str) -> None:
    # Prepare: every key is required, so dropping any one must fail
    values = ticket.to_config()
    del values[key]

    # Execute / Assert
    with pytest.raises(TicketError, match=f"'{key}' is missing"):
        Ticket.from_config(values)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # no port
        ("session-endpoint", "127.0.0.1"),
        # port 0 cannot be dialled
        ("session-endpoint", "127.0.0.1:0"),
        # port out of range
        ("session-endpoint", "127.0.0.1:70000"),
        # unbracketed IPv6 is ambiguous
        ("session-endpoint", "::1:5000"),
        # endpoint of the wrong type
        ("session-endpoint", b"127.0.0.1:5000"),
        # too short to be 16 random bytes in hex
        ("session-id", "abc"),
        # uppercase hex: ids are lowercase
        ("session-id", "0123456789ABCDEF" * 2),
        # not hex
        ("session-id", "z" * 32),
        # token too short
        ("session-token", b"\x00" * 31),
        # token as text
        ("session-token", "00" * 32),
        # expiry as text
        ("session-expires-at", "4000000000"),
        # a bool is not a time
        ("session-expires-at", True),
        # not finite
        ("session-expires-at", float("inf")),
        # before the epoch
        ("session-expires-at", -1.0),
        # random bytes are not a key
        ("session-server-public", b"\x01" * 44),
        # a private key must never travel
        ("session-server-public", _X25519_PRIVATE),
        # a public key on another curve
        ("session-server-public", _P256_PUBLIC),
        # empty
        ("session-server-public", b""),
        # not PEM
        ("session-ca-pem", b"not a certificate"),
        # PEM as text
        ("session-ca-pem", "-----BEGIN CERTIFICATE-----"),
    ],
)
def test_malformed_value_is_refused_naming_its_key(
    ticket: Ticket, key: str, value: object
) -> None:
    # Prepare
    values: dict[str, object] = {**ticket.to_config(), key: value}

    # Execute / Assert
    with pytest.raises(TicketError, match=f"'{key}'") as info:
        Ticket.from_config(values)
    assert isinstance(info.value, ValueError)
    assert repr(ticket.token) not in str(info.value)


def test_an_integer_expiry_is_accepted(ticket: Ticket) -> None:
    # Prepare: a ConfigRecord may hand back an int for a whole number of seconds
    values: dict[str, object] = {**ticket.to_config(), "session-expires-at": 4 * 10**9}

    # Execute
    back = Ticket.from_config(values)

    # Assert
    assert back.expires_at == 4e9


def test_constructor_validates_like_from_config(ticket: Ticket) -> None:
    # Execute / Assert
    with pytest.raises(TicketError, match="'session-token'"):
        dataclasses.replace(ticket, token=b"short")
    with pytest.raises(TicketError, match="'session-server-public'"):
        dataclasses.replace(ticket, server_public=Handshake().public_bytes[:-1])


def test_expired_compares_with_the_clock(ticket: Ticket) -> None:
    # Assert
    assert not ticket.expired(now=ticket.expires_at - 1)
    assert ticket.expired(now=ticket.expires_at)
    assert not ticket.expired()


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        # a name
        ("localhost:9000", ("localhost", 9000)),
        # an IPv4 address
        ("10.0.0.5:1", ("10.0.0.5", 1)),
        # a bracketed IPv6 address
        ("[::1]:443", ("::1", 443)),
    ],
)
def test_endpoints_split_and_join(endpoint: str, expected: tuple[str, int]) -> None:
    # Execute
    host, port = split_endpoint(endpoint)

    # Assert
    assert (host, port) == expected
    assert join_endpoint(host, port) == endpoint
