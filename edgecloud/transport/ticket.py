"""Session tickets: what the server announces to one client over the control plane."""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from Crypto.PublicKey import ECC
from cryptography import x509

from edgecloud.transport.errors import TicketError
from edgecloud.transport.wire import (
    MAX_PUBLIC_KEY_BYTES,
    SESSION_ID_CHARS,
    TOKEN_BYTES,
    is_session_id,
)

_T = TypeVar("_T")

KEY_ENDPOINT = "session-endpoint"
KEY_SESSION_ID = "session-id"
KEY_TOKEN = "session-token"
KEY_EXPIRES_AT = "session-expires-at"
KEY_SERVER_PUBLIC = "session-server-public"
KEY_CA_PEM = "session-ca-pem"
TICKET_KEYS = (
    KEY_ENDPOINT,
    KEY_SESSION_ID,
    KEY_TOKEN,
    KEY_EXPIRES_AT,
    KEY_SERVER_PUBLIC,
    KEY_CA_PEM,
)


@dataclass(frozen=True)
class Ticket:
    """Everything a client needs to open one session, and nothing it must not log.

    Travels once, inside the authenticated Flower message of the round; the token is
    single use and never sent on the stream (the hello carries an HMAC of it), and is
    left out of ``repr`` so that logging a ticket does not leak it.

    Parameters
    ----------
    endpoint : str
        ``host:port`` the client dials (``[v6]:port`` for an IPv6 literal).
    session_id : str
        32 lowercase hex characters, random.
    token : bytes
        32 random bytes, the secret the hello proves possession of.
    expires_at : float
        Unix time after which the server refuses the hello.
    server_public : bytes
        The server session's X25519 public key (``Handshake.public_bytes``).
    ca_pem : bytes
        The CA certificate that signed the endpoint's TLS certificate.

    Raises
    ------
    TicketError
        For any malformed field, naming its config key.
    """

    endpoint: str
    session_id: str
    token: bytes = field(repr=False)
    expires_at: float
    server_public: bytes = field(repr=False)
    ca_pem: bytes = field(repr=False)

    def __post_init__(self) -> None:
        try:
            _, port = split_endpoint(self.endpoint)
        except ValueError as err:
            raise TicketError(f"ticket key {KEY_ENDPOINT!r}: {err}") from None
        if port == 0:
            raise TicketError(f"ticket key {KEY_ENDPOINT!r}: port 0 cannot be dialled")
        if not is_session_id(self.session_id):
            raise TicketError(
                f"ticket key {KEY_SESSION_ID!r} must be {SESSION_ID_CHARS} lowercase "
                f"hex characters, got {self.session_id!r}"
            )
        if not isinstance(self.token, bytes) or len(self.token) != TOKEN_BYTES:
            got = len(self.token) if isinstance(self.token, bytes) else "not bytes"
            raise TicketError(
                f"ticket key {KEY_TOKEN!r} must be {TOKEN_BYTES} bytes, got {got}"
            )
        if (
            isinstance(self.expires_at, bool)
            or not isinstance(self.expires_at, int | float)
            or not math.isfinite(self.expires_at)
            or self.expires_at <= 0
        ):
            raise TicketError(
                f"ticket key {KEY_EXPIRES_AT!r} must be a positive unix time, got "
                f"{self.expires_at!r}"
            )
        _check_x25519_public(self.server_public)
        _check_ca(self.ca_pem)

    def expired(self, now: float | None = None) -> bool:
        """Whether the ticket's expiry has passed (at ``now``, default: the clock)."""
        return (time.time() if now is None else now) >= self.expires_at

    def to_config(self) -> dict[str, str | bytes | float]:
        """The ticket as values a Flower ``ConfigRecord`` holds (kebab-case keys)."""
        return {
            KEY_ENDPOINT: self.endpoint,
            KEY_SESSION_ID: self.session_id,
            KEY_TOKEN: self.token,
            KEY_EXPIRES_AT: float(self.expires_at),
            KEY_SERVER_PUBLIC: self.server_public,
            KEY_CA_PEM: self.ca_pem,
        }

    @classmethod
    def from_config(cls, values: Mapping[str, object]) -> Ticket:
        """Read a ticket from ``values`` (other keys are ignored).

        Raises
        ------
        TicketError
            Naming the first missing or malformed key.
        """
        for key in TICKET_KEYS:
            if key not in values:
                raise TicketError(f"ticket key {key!r} is missing")
        endpoint = _typed(values, KEY_ENDPOINT, str)
        session_id = _typed(values, KEY_SESSION_ID, str)
        token = _typed(values, KEY_TOKEN, bytes)
        server_public = _typed(values, KEY_SERVER_PUBLIC, bytes)
        ca_pem = _typed(values, KEY_CA_PEM, bytes)
        expires_at = values[KEY_EXPIRES_AT]
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
            raise TicketError(
                f"ticket key {KEY_EXPIRES_AT!r} must be a number, got "
                f"{type(expires_at).__name__}"
            )
        return cls(
            endpoint=endpoint,
            session_id=session_id,
            token=token,
            expires_at=float(expires_at),
            server_public=server_public,
            ca_pem=ca_pem,
        )


def split_endpoint(endpoint: object) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> ``(host, port)``; ValueError if not."""
    if not isinstance(endpoint, str):
        raise ValueError(f"endpoint must be a string, got {type(endpoint).__name__}")
    host, sep, port_text = endpoint.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"endpoint {endpoint!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"endpoint {endpoint!r}: {host!r} is not an IPv6 address"
            ) from None
    elif ":" in host:
        raise ValueError(f"endpoint {endpoint!r}: write an IPv6 host as [{host}]")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"endpoint {endpoint!r}: port {port} is not in 0..65535")
    return host, port


def join_endpoint(host: str, port: int) -> str:
    """``(host, port)`` -> ``"host:port"``, bracketing an IPv6 literal."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _typed(values: Mapping[str, object], key: str, kind: type[_T]) -> _T:
    value = values[key]
    if not isinstance(value, kind):
        raise TicketError(
            f"ticket key {key!r} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _check_x25519_public(value: object) -> None:
    if not isinstance(value, bytes) or not 0 < len(value) <= MAX_PUBLIC_KEY_BYTES:
        raise TicketError(
            f"ticket key {KEY_SERVER_PUBLIC!r} must be an X25519 public key "
            f"(DER bytes, at most {MAX_PUBLIC_KEY_BYTES})"
        )
    try:
        key = ECC.import_key(value)
    except (ValueError, IndexError, TypeError) as err:
        raise TicketError(
            f"ticket key {KEY_SERVER_PUBLIC!r} is not an X25519 public key: {err}"
        ) from None
    if key.curve != "Curve25519" or key.has_private():
        raise TicketError(
            f"ticket key {KEY_SERVER_PUBLIC!r} must be a public X25519 key, got a "
            f"{'private ' if key.has_private() else ''}{key.curve} key"
        )


def _check_ca(value: object) -> None:
    if not isinstance(value, bytes):
        raise TicketError(f"ticket key {KEY_CA_PEM!r} must be PEM bytes")
    try:
        x509.load_pem_x509_certificates(value)
    except ValueError as err:
        raise TicketError(
            f"ticket key {KEY_CA_PEM!r} is not a PEM certificate: {err}"
        ) from None
