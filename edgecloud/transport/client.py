"""The client end of a session: dial the endpoint over TLS, prove the ticket."""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc  # type: ignore[import-untyped]
from cryptography import x509

from edgecloud.channel.errors import ChannelError
from edgecloud.channel.key_agreement import Handshake, SessionKeys
from edgecloud.transport.errors import (
    EndpointUnreachable,
    SessionClosed,
    SessionRefused,
    TicketError,
    TransportError,
)
from edgecloud.transport.ticket import Ticket
from edgecloud.transport.wire import (
    DATA_PREFIX,
    FIN_FRAME,
    FRAME_ALLOWANCE,
    KIND_DATA,
    METHOD,
    Hello,
    encode_accept,
    encode_hello,
    hello_proof,
)

log = logging.getLogger(__name__)

_MAX_ID = (1 << 64) - 1
_MAX_MESSAGE_LIMIT = (1 << 31) - 1 - FRAME_ALLOWANCE
# before acceptance these mean "never got through", the rest are the server's answer
_UNREACHABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})


@dataclass(frozen=True)
class _End:
    """Last item of the inbox: the stream's final status (``code`` None = OK)."""

    code: str | None
    details: str


class SessionClient:
    """One client session: connect with a ticket, then exchange messages.

    Parameters
    ----------
    ticket : Ticket
        From the round's Flower message.
    run_id, node_id : int
        This node's run and id (the keys are bound to them; the server checks them
        against the ticket).
    ca_pem : bytes, optional
        The CA this client trusts for the endpoint (e.g. one pinned in the node
        config); default: ``ticket.ca_pem``.
    connect_timeout : float
        Seconds :meth:`connect` waits for the endpoint to accept.
    max_message_bytes : int
        Largest message sent or accepted.

    Notes
    -----
    ``send``/``receive`` are thread-safe. :meth:`close` cancels anything not yet
    sent: to deliver the last message, :meth:`finish`, then :meth:`receive` until
    it returns ``None`` (the server closed), then :meth:`close`.
    """

    def __init__(
        self,
        ticket: Ticket,
        *,
        run_id: int,
        node_id: int,
        ca_pem: bytes | None = None,
        connect_timeout: float = 10.0,
        max_message_bytes: int = 64 << 20,
    ) -> None:
        if not isinstance(ticket, Ticket):
            raise TypeError(f"ticket is a {type(ticket).__name__}; expected a Ticket")
        for name, value in (("run_id", run_id), ("node_id", node_id)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}={value!r}: expected an integer")
            if not 0 <= value <= _MAX_ID:
                raise ValueError(f"{name}={value}: expected 0..2**64-1")
        if (
            isinstance(connect_timeout, bool)
            or not isinstance(connect_timeout, int | float)
            or not math.isfinite(connect_timeout)
            or connect_timeout <= 0
        ):
            raise ValueError(
                f"connect_timeout={connect_timeout!r}: expected a finite number > 0"
            )
        if (
            isinstance(max_message_bytes, bool)
            or not isinstance(max_message_bytes, int)
            or not 1 <= max_message_bytes <= _MAX_MESSAGE_LIMIT
        ):
            raise ValueError(
                f"max_message_bytes={max_message_bytes!r}: expected an integer in "
                f"1..{_MAX_MESSAGE_LIMIT}"
            )
        if ca_pem is not None:
            try:
                x509.load_pem_x509_certificates(ca_pem)
            except (ValueError, TypeError) as err:
                raise ValueError(f"ca_pem is not a PEM certificate: {err}") from None
        self.ticket = ticket
        self.run_id = run_id
        self.node_id = node_id
        self.max_message_bytes = max_message_bytes
        self._ca_pem = ticket.ca_pem if ca_pem is None else ca_pem
        self._connect_timeout = float(connect_timeout)
        self._lock = threading.Lock()
        self._state = "new"  # -> connecting -> connected -> closed
        self._finished = False
        self._end: _End | None = None  # set by the reader once the stream is over
        self._inbox: queue.Queue[bytes | _End] = queue.Queue()
        self._outbox: queue.Queue[bytes | None] = queue.Queue()  # None: half-close
        self._channel: Any = None
        self._call: Any = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> SessionClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SessionClient(endpoint={self.ticket.endpoint!r}, "
            f"session_id={self.ticket.session_id!r}, {self._state})"
        )

    def connect(self) -> SessionKeys:
        """Open the stream (TLS), send the hello and wait for the server's acceptance.

        Returns
        -------
        SessionKeys
            Client-side keys, matching the server session's.

        Raises
        ------
        TicketError
            If the ticket expired before trying (nothing is sent).
        EndpointUnreachable
            No listener, TLS handshake failure (e.g. an untrusted CA) or no answer
            within ``connect_timeout``.
        SessionRefused
            The server refused the hello; ``str(err)`` has its reason.
        TransportError
            If called twice.
        """
        with self._lock:
            if self._state != "new":
                raise TransportError(f"{self._name()}: connect() was already called")
            self._state = "connecting"
        ticket = self.ticket
        if ticket.expired():
            self.close()
            raise TicketError(
                f"{self._name()}: the ticket expired at {ticket.expires_at:.3f} "
                "(unix time); the server must announce a new session"
            )
        handshake = Handshake()
        try:
            keys = handshake.derive(
                ticket.server_public,
                is_server=False,
                run_id=self.run_id,
                node_id=self.node_id,
                binding=ticket.token,
            )
        except ChannelError as err:
            self.close()
            raise TicketError(f"ticket key 'session-server-public': {err}") from None
        proof = hello_proof(ticket.token, ticket.session_id, handshake.public_bytes)
        hello = Hello(
            self.run_id, self.node_id, ticket.session_id, handshake.public_bytes, proof
        )
        self._outbox.put(encode_hello(hello))
        self._open_stream()
        try:
            first = self._inbox.get(timeout=self._connect_timeout)
        except queue.Empty:
            self.close()
            raise EndpointUnreachable(
                f"{self._name()}: no answer from {ticket.endpoint} within "
                f"{self._connect_timeout} s"
            ) from None
        if isinstance(first, _End):
            self.close()
            raise self._connect_error(first)
        if first != encode_accept(ticket.session_id):
            self.close()
            raise SessionRefused(
                f"{self._name()}: {ticket.endpoint} answered the hello with something "
                "other than an acceptance"
            )
        with self._lock:
            if self._state != "connecting":  # closed by another thread meanwhile
                raise SessionClosed(f"{self._name()}: closed while connecting")
            self._state = "connected"
        return keys

    def receive(self, timeout: float) -> bytes | None:
        """The server's next message, or ``None`` once it closed the stream normally.

        Raises
        ------
        TimeoutError
            If none arrives within ``timeout`` seconds (the session stays usable).
        SessionClosed
            If the stream was aborted (server stopped, message over the size limit)
            or lost; ``str(err)`` has the status and reason.
        TransportError
            Before :meth:`connect`.
        """
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout < 0
        ):
            raise ValueError(f"timeout={timeout!r}: expected a finite number >= 0")
        self._check_connected()
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"{self._name()}: no message from the server within {timeout} s"
            ) from None
        if isinstance(item, _End):
            self._inbox.put(item)  # every later receive() ends the same way
            if item.code is None:
                return None
            raise SessionClosed(f"{self._name()}: {item.code}: {item.details}")
        if not item or item[0] != KIND_DATA:
            self.close()
            raise SessionClosed(
                f"{self._name()}: unexpected frame (kind {item[0] if item else None}) "
                "from the server"
            )
        if len(item) - 1 > self.max_message_bytes:
            self.close()
            raise SessionClosed(
                f"{self._name()}: the server sent {len(item) - 1} bytes, over "
                f"max_message_bytes={self.max_message_bytes}"
            )
        return item[1:]

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the server and return at once (order is kept).

        Raises
        ------
        TypeError
            If ``data`` is not bytes.
        ValueError
            If ``data`` exceeds ``max_message_bytes`` (nothing is sent, the session
            stays usable).
        SessionClosed
            If the stream is over.
        TransportError
            Before :meth:`connect` or after :meth:`finish`.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"data is a {type(data).__name__}; expected bytes")
        if len(data) > self.max_message_bytes:
            raise ValueError(
                f"{self._name()}: message of {len(data)} bytes exceeds "
                f"max_message_bytes={self.max_message_bytes}"
            )
        with self._lock:
            self._check_connected()
            if self._finished:
                raise TransportError(f"{self._name()}: finish() was called, no sends")
            end = self._end
            if end is not None:
                raise SessionClosed(f"{self._name()}: {_describe(end)}")
            self._outbox.put(DATA_PREFIX + data)

    def finish(self) -> None:
        """Half-close: tell the server the last message was sent (idempotent)."""
        with self._lock:
            self._check_connected()
            if self._finished:
                return
            self._finished = True
            self._outbox.put(FIN_FRAME)
            self._outbox.put(None)

    def close(self) -> None:
        """Cancel the stream and release the connection (idempotent)."""
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
        self._outbox.put(None)  # lets gRPC's request thread leave the generator
        if self._call is not None:
            self._call.cancel()
        if self._channel is not None:
            self._channel.close()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=10)

    # ---- internals ----------------------------------------------------------------

    def _name(self) -> str:
        return f"session {self.ticket.session_id[:8]} (node {self.node_id})"

    def _check_connected(self) -> None:
        if self._state == "connected":
            return
        if self._state == "closed":
            raise SessionClosed(f"{self._name()}: closed by this client")
        raise TransportError(f"{self._name()}: call connect() first")

    def _open_stream(self) -> None:
        limit = self.max_message_bytes + FRAME_ALLOWANCE
        credentials = grpc.ssl_channel_credentials(root_certificates=self._ca_pem)
        self._channel = grpc.secure_channel(
            self.ticket.endpoint,
            credentials,
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # a connection of its own, not shared with other channels
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )
        stream = self._channel.stream_stream(METHOD)
        self._call = stream(self._requests())
        self._reader = threading.Thread(
            target=self._read_responses,
            name=f"edgecloud-session-client-{self.ticket.session_id[:8]}",
            daemon=True,
        )
        self._reader.start()

    def _requests(self) -> Iterator[bytes]:
        """What gRPC sends: the outbox, until ``None`` (half-close)."""
        while True:
            item = self._outbox.get()
            if item is None:
                return
            yield item

    def _read_responses(self) -> None:
        end = _End(None, "the server closed the stream")
        try:
            for message in self._call:
                self._inbox.put(message)
        except grpc.RpcError as err:
            end = _End(err.code().name, err.details() or "")
        with self._lock:
            self._end = end
        self._inbox.put(end)

    def _connect_error(self, end: _End) -> TransportError:
        endpoint = self.ticket.endpoint
        if end.code is None:
            return SessionRefused(
                f"{self._name()}: {endpoint} ended the stream without accepting"
            )
        if end.code in _UNREACHABLE_CODES:
            return EndpointUnreachable(
                f"{self._name()}: cannot reach {endpoint}: {end.details}"
            )
        return SessionRefused(
            f"{self._name()}: {endpoint} refused the session ({end.code}): "
            f"{end.details}"
        )


def _describe(end: _End) -> str:
    return end.details if end.code is None else f"{end.code}: {end.details}"
