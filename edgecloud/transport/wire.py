"""The session stream's wire format: a kind byte per gRPC message, hello and acceptance.

Every gRPC message on the stream is one frame, ``kind (u8) | body`` (big endian)::

    HELLO  1  client -> server, first message only:
              version u8 | run_id u64 | node_id u64 | session_id (32 ASCII hex)
              | key_len u16 | client_public (key_len bytes, X25519 DER) | proof (32 B)
    ACCEPT 2  server -> client, first message only: version u8 | session_id (32 hex)
    DATA   3  both ways, after ACCEPT: the caller's bytes, opaque (already sealed)
    FIN    4  client -> server, empty body: "my last message was sent"

The proof is ``HMAC-SHA256(token, b"edgecloud-session-hello|" + session_id +
client_public)``: the token itself never travels on the stream. Refusals are not
frames but gRPC statuses with a one-line reason. FIN exists because a gRPC server
sees the same end-of-stream for a client's half-close and for a message over its
size limit.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

SERVICE = "edgecloud.transport.Session"
METHOD = f"/{SERVICE}/Open"
VERSION = 1

KIND_HELLO = 1
KIND_ACCEPT = 2
KIND_DATA = 3
KIND_FIN = 4

SESSION_ID_CHARS = 32
TOKEN_BYTES = 32
PROOF_BYTES = 32
# Handshake.public_bytes is 44 bytes; anything much longer is not an X25519 key.
MAX_PUBLIC_KEY_BYTES = 128
# Room on top of max_message_bytes for the kind byte and the hello (gRPC's limit).
FRAME_ALLOWANCE = 1024

DATA_PREFIX = bytes([KIND_DATA])
FIN_FRAME = bytes([KIND_FIN])

_HELLO_LABEL = b"edgecloud-session-hello|"
_HELLO_HEAD = struct.Struct(f">BBQQ{SESSION_ID_CHARS}sH")
_HEX = frozenset("0123456789abcdef")


class WireError(ValueError):
    """A frame does not follow the format (the server refuses, never crashes)."""


@dataclass(frozen=True)
class Hello:
    """The client's first message: which session, its key, and proof of the token."""

    run_id: int
    node_id: int
    session_id: str
    client_public: bytes
    proof: bytes


def is_session_id(value: object) -> bool:
    """Whether ``value`` is a session id (32 lowercase hex characters)."""
    return (
        isinstance(value, str) and len(value) == SESSION_ID_CHARS and set(value) <= _HEX
    )


def hello_proof(token: bytes, session_id: str, client_public: bytes) -> bytes:
    """HMAC-SHA256 of the session id and the client's public key under the token."""
    message = _HELLO_LABEL + session_id.encode("ascii") + client_public
    return hmac.new(token, message, hashlib.sha256).digest()


def encode_hello(hello: Hello) -> bytes:
    """The HELLO frame of ``hello``."""
    head = _HELLO_HEAD.pack(
        KIND_HELLO,
        VERSION,
        hello.run_id,
        hello.node_id,
        hello.session_id.encode("ascii"),
        len(hello.client_public),
    )
    return head + hello.client_public + hello.proof


def decode_hello(frame: bytes) -> Hello:
    """Parse a HELLO frame; raises :class:`WireError` naming what is wrong."""
    if len(frame) < _HELLO_HEAD.size + PROOF_BYTES:
        raise WireError(
            f"{len(frame)} bytes, a hello has at least {_HELLO_HEAD.size + PROOF_BYTES}"
        )
    kind, version, run_id, node_id, raw_id, key_len = _HELLO_HEAD.unpack_from(frame)
    if kind != KIND_HELLO:
        raise WireError(f"first message has kind {kind}, expected {KIND_HELLO}")
    if version != VERSION:
        raise WireError(f"protocol version {version}, this endpoint speaks {VERSION}")
    session_id = raw_id.decode("ascii", errors="replace")
    if not is_session_id(session_id):
        raise WireError("session id is not 32 lowercase hex characters")
    if key_len > MAX_PUBLIC_KEY_BYTES:
        raise WireError(
            f"public key of {key_len} bytes, at most {MAX_PUBLIC_KEY_BYTES}"
        )
    if len(frame) != _HELLO_HEAD.size + key_len + PROOF_BYTES:
        raise WireError(
            f"{len(frame)} bytes, expected {_HELLO_HEAD.size + key_len + PROOF_BYTES} "
            f"for a {key_len}-byte key"
        )
    key_end = _HELLO_HEAD.size + key_len
    return Hello(
        run_id=run_id,
        node_id=node_id,
        session_id=session_id,
        client_public=bytes(frame[_HELLO_HEAD.size : key_end]),
        proof=bytes(frame[key_end:]),
    )


def encode_accept(session_id: str) -> bytes:
    """The ACCEPT frame for ``session_id``."""
    return bytes([KIND_ACCEPT, VERSION]) + session_id.encode("ascii")
