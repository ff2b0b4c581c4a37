"""The errors the session transport raises: one base class, one type per failure."""

from __future__ import annotations

from edgecloud.exceptions import EdgecloudError


class TransportError(EdgecloudError):
    """Base class of every error the session transport raises on purpose."""


class TicketError(TransportError, ValueError):
    """A ticket is malformed, incomplete or expired; the message names the key."""


class SessionRefused(TransportError):  # noqa: N818 (the API's name)
    """The endpoint refused the hello (unknown session, bad proof, expired, used)."""


class SessionClosed(TransportError):  # noqa: N818 (the API's name)
    """The peer ended the session or the stream was lost; ``str(err)`` says which."""


class EndpointUnreachable(TransportError):  # noqa: N818 (the API's name)
    """The endpoint cannot be reached: no listener, TLS handshake failure, timeout."""
