"""The hello's layout and proof, and every malformed hello the server must refuse."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from edgecloud.channel import Handshake
from edgecloud.transport.wire import (
    KIND_ACCEPT,
    Hello,
    WireError,
    decode_hello,
    encode_accept,
    encode_hello,
    hello_proof,
)

SESSION_ID = "00112233445566778899aabbccddeeff"
TOKEN = bytes(range(32))
CLIENT_PUBLIC = Handshake().public_bytes


def _hello() -> Hello:
    proof = hello_proof(TOKEN, SESSION_ID, CLIENT_PUBLIC)
    return Hello(
        run_id=2**64 - 1,
        node_id=12345,
        session_id=SESSION_ID,
        client_public=CLIENT_PUBLIC,
        proof=proof,
    )


def test_hello_round_trips() -> None:
    # Execute
    back = decode_hello(encode_hello(_hello()))

    # Assert
    assert back == _hello()


def test_proof_is_the_documented_hmac_and_binds_every_input() -> None:
    # Prepare
    label = b"edgecloud-session-hello|"
    expected = hmac.new(
        TOKEN, label + SESSION_ID.encode() + CLIENT_PUBLIC, hashlib.sha256
    ).digest()

    # Execute
    proof = hello_proof(TOKEN, SESSION_ID, CLIENT_PUBLIC)

    # Assert
    assert proof == expected
    assert hello_proof(bytes(32), SESSION_ID, CLIENT_PUBLIC) != proof
    assert hello_proof(TOKEN, "f" * 32, CLIENT_PUBLIC) != proof
    assert hello_proof(TOKEN, SESSION_ID, Handshake().public_bytes) != proof


def test_the_token_is_not_in_the_hello() -> None:
    # Execute
    frame = encode_hello(_hello())

    # Assert
    assert TOKEN not in frame


def test_accept_frame_names_the_session() -> None:
    # Execute
    frame = encode_accept(SESSION_ID)

    # Assert
    assert frame[0] == KIND_ACCEPT and frame.endswith(SESSION_ID.encode())


_GOOD = encode_hello(_hello())


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        # nothing at all
        (b"", "at least"),
        # cut inside the fixed header
        (_GOOD[:20], "at least"),
        # cut inside the proof
        (_GOOD[:-1], "expected"),
        # trailing garbage
        (_GOOD + b"\x00", "expected"),
        # a data frame where the hello belongs
        (b"\x03" + _GOOD[1:], "kind 3"),
        # a future protocol version
        (_GOOD[:1] + b"\x02" + _GOOD[2:], "version 2"),
        # session id with non-hex characters
        (_GOOD[:18] + b"Z" * 32 + _GOOD[50:], "session id"),
        # session id with non-ASCII bytes
        (_GOOD[:18] + b"\xff" * 32 + _GOOD[50:], "session id"),
        # a key length far beyond an X25519 key
        (_GOOD[:50] + b"\xff\xff" + _GOOD[52:], "public key of 65535"),
    ],
)
def test_malformed_hello_raises_wire_error(frame: bytes, reason: str) -> None:
    # Execute / Assert
    with pytest.raises(WireError, match=reason):
        decode_hello(frame)
