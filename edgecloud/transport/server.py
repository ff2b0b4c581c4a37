"""The session endpoint: a TLS gRPC bidirectional stream per announced session.

One event-loop thread serves every session (``grpc.aio``); the caller's threads talk
to it through thread-safe queues, so ``send``/``receive`` of different sessions may
be called from one driver thread or from worker threads, and one slow or dead
client never blocks another.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
import queue
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import grpc  # type: ignore[import-untyped]
import grpc.aio  # type: ignore[import-untyped]

from edgecloud.channel.errors import ChannelError
from edgecloud.channel.key_agreement import Handshake, SessionKeys
from edgecloud.deploy.certificates import TlsMaterial, tls_material
from edgecloud.transport.errors import SessionClosed, TransportError
from edgecloud.transport.ticket import Ticket, join_endpoint, split_endpoint
from edgecloud.transport.tls import load_tls_dir
from edgecloud.transport.wire import (
    DATA_PREFIX,
    FRAME_ALLOWANCE,
    KIND_DATA,
    KIND_FIN,
    SERVICE,
    TOKEN_BYTES,
    Hello,
    WireError,
    decode_hello,
    encode_accept,
    hello_proof,
)

log = logging.getLogger(__name__)

_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})
_MAX_ID = (1 << 64) - 1  # Flower run and node ids are unsigned 64-bit
MAX_MESSAGE_LIMIT = (1 << 31) - 1 - FRAME_ALLOWANCE  # gRPC sizes are int32


@dataclass(frozen=True)
class _Ended:
    """Last item of a session's inbox: why nothing more will arrive."""

    reason: str


@dataclass(frozen=True)
class _Abort:
    """Outbox item: end the stream with this gRPC status."""

    code: Any
    reason: str


class _Close:
    """Outbox item: end the stream normally once everything before it was sent."""


_CLOSE = _Close()


class _RefusedError(Exception):
    """A hello the server does not accept: the gRPC status and its one-line reason."""

    def __init__(self, code: Any, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class ServerSession:
    """The server's end of one announced session (one client, one round).

    Created by :meth:`SessionServer.announce`; every method is thread-safe.

    Attributes
    ----------
    node_id, run_id : int
        Whom the ticket was issued to; keys are derived for them.
    session_id : str
        The ticket's session id.
    expires_at : float
        Unix time after which the hello is refused.
    """

    def __init__(
        self,
        *,
        server: SessionServer,
        run_id: int,
        node_id: int,
        session_id: str,
        token: bytes,
        expires_at: float,
        handshake: Handshake,
    ) -> None:
        self.run_id = run_id
        self.node_id = node_id
        self.session_id = session_id
        self.expires_at = expires_at
        self._server = server
        self._token = token
        self._handshake = handshake
        self._cond = threading.Condition()
        self._used = False
        self._connected = False
        self._client_finished = False
        self._keys: SessionKeys | None = None
        self._ended: str | None = None  # why the server can no longer send
        self._terminal: str | None = None  # why receive() no longer returns data
        self._inbox: queue.Queue[bytes | _Ended] = queue.Queue()
        # lives on the server's loop: only touched through SessionServer._in_loop
        self._outbox: asyncio.Queue[bytes | _Close | _Abort] = asyncio.Queue()

    def __repr__(self) -> str:
        state = "ended" if self._ended else "connected" if self._connected else "new"
        return (
            f"ServerSession(node_id={self.node_id}, session_id={self.session_id!r}, "
            f"{state})"
        )

    # ---- caller side ----------------------------------------------------------

    def wait_connected(self, timeout: float) -> None:
        """Block until the client's hello was accepted.

        Raises
        ------
        TimeoutError
            If no hello was accepted within ``timeout`` seconds.
        SessionClosed
            If the session ended (closed, server stopped) before a client connected.
        """
        _check_timeout(timeout)
        with self._cond:
            self._cond.wait_for(
                lambda: self._connected or self._ended is not None, timeout
            )
            if self._connected:
                return
            if self._ended is not None:
                raise SessionClosed(f"{self._name()}: {self._ended}")
        raise TimeoutError(f"{self._name()}: no client connected within {timeout} s")

    @property
    def connected(self) -> bool:
        """Whether a client's hello was accepted (it stays true after the end)."""
        return self._connected

    @property
    def keys(self) -> SessionKeys:
        """Server-side session keys (derived with the ticket's token as binding).

        Raises
        ------
        TransportError
            Before a client connected.
        """
        keys = self._keys
        if keys is None:
            raise TransportError(f"{self._name()}: no keys yet, no client connected")
        return keys

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the client and return at once (order is kept).

        Messages sent before the client connects are delivered after acceptance.

        Raises
        ------
        TypeError
            If ``data`` is not bytes.
        ValueError
            If ``data`` exceeds ``max_message_bytes`` (nothing is sent, the session
            stays usable).
        SessionClosed
            If the session ended (closed, stopped, client gone).
        """
        if not isinstance(data, bytes):
            raise TypeError(f"data is a {type(data).__name__}; expected bytes")
        limit = self._server.max_message_bytes
        if len(data) > limit:
            raise ValueError(
                f"{self._name()}: message of {len(data)} bytes exceeds "
                f"max_message_bytes={limit}"
            )
        with self._cond:
            if self._ended is not None:
                raise SessionClosed(f"{self._name()}: {self._ended}")
            # under the lock: a concurrent close() queues its marker after this
            if not self._server._in_loop(self._outbox.put_nowait, DATA_PREFIX + data):
                raise SessionClosed(f"{self._name()}: the endpoint is stopped")

    def receive(self, timeout: float) -> bytes:
        """The client's next message.

        Raises
        ------
        TimeoutError
            If none arrives within ``timeout`` seconds (the session stays usable).
        SessionClosed
            Once the client finished its stream (see :attr:`client_finished`), or
            disconnected, or the session was closed or the endpoint stopped; the
            reason tells which.
        """
        _check_timeout(timeout)
        try:
            item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"{self._name()}: no message within {timeout} s"
            ) from None
        if isinstance(item, _Ended):
            with self._cond:
                if self._terminal is None:
                    self._terminal = item.reason
                terminal = self._terminal
            self._inbox.put(item)  # every later receive() ends the same way
            raise SessionClosed(f"{self._name()}: {terminal}")
        return item

    @property
    def client_finished(self) -> bool:
        """Whether the client half-closed after its last message (``finish()``)."""
        return self._client_finished

    def close(self) -> None:
        """End the stream from the server side (idempotent).

        Messages already queued by :meth:`send` are delivered first, then the client's
        ``receive`` returns ``None``. A session no client connected to is retired: its
        ticket is refused from now on.
        """
        with self._cond:
            if not self._end_locked("the server closed the session"):
                return
            self._server._in_loop(self._outbox.put_nowait, _CLOSE)

    # ---- loop side --------------------------------------------------------------

    def _name(self) -> str:
        return f"session {self.session_id[:8]} (node {self.node_id})"

    def _end_locked(self, reason: str) -> bool:
        if self._ended is not None:
            return False
        self._ended = reason
        if not self._client_finished:  # after FIN the inbox already has its end
            self._inbox.put(_Ended(reason))
        self._cond.notify_all()
        return True

    def _end(self, reason: str) -> bool:
        with self._cond:
            return self._end_locked(reason)

    def _accept(self, hello: Hello, now: float) -> None:
        """Admit ``hello`` or raise _RefusedError; only success changes state."""
        expected = hello_proof(self._token, self.session_id, hello.client_public)
        if not hmac.compare_digest(hello.proof, expected):
            raise _RefusedError(
                grpc.StatusCode.UNAUTHENTICATED,
                "the hello's proof does not match the ticket's token",
            )
        with self._cond:
            if self._used:
                raise _RefusedError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "the ticket was already used (tickets are single use)",
                )
            if self._ended is not None:
                raise _RefusedError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"the session is over ({self._ended})",
                )
            if now >= self.expires_at:
                raise _RefusedError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"the ticket expired {now - self.expires_at:.1f} s ago",
                )
            if (hello.run_id, hello.node_id) != (self.run_id, self.node_id):
                raise _RefusedError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"the ticket was issued for run {self.run_id} node {self.node_id},"
                    f" the hello names run {hello.run_id} node {hello.node_id}",
                )
            try:
                keys = self._handshake.derive(
                    hello.client_public,
                    is_server=True,
                    run_id=self.run_id,
                    node_id=self.node_id,
                    binding=self._token,
                )
            except ChannelError as err:
                raise _RefusedError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"client key rejected: {err}"
                ) from None
            self._used = True
            self._keys = keys

    def _expire_if_unused(self, now: float) -> None:
        """End the session if its ticket expired unused (atomic with _accept)."""
        with self._cond:
            if self._used or now < self.expires_at:
                return
            if self._end_locked("the ticket expired before a client connected"):
                self._server._in_loop(self._outbox.put_nowait, _CLOSE)

    def _on_accepted(self) -> None:
        with self._cond:
            self._connected = True
            self._cond.notify_all()

    def _on_data(self, body: bytes) -> None:
        self._inbox.put(body)

    def _on_fin(self) -> None:
        with self._cond:
            self._client_finished = True
            if self._ended is None:
                self._inbox.put(_Ended("the client finished its stream"))

    def _post_abort(self, code: Any, reason: str) -> None:
        """(loop) Drop what is queued and end the stream with ``code``."""
        self._end(reason)
        while not self._outbox.empty():
            self._outbox.get_nowait()
        self._outbox.put_nowait(_Abort(code, reason))


class SessionServer:
    """The run's session endpoint: announces sessions and serves their streams.

    Parameters
    ----------
    bind : str
        ``host:port`` to listen on (port 0 = a free port).
    advertise : str, optional
        Host clients dial (default: the bind host). Required when binding a
        wildcard address (``0.0.0.0``, ``[::]``).
    tls_dir : Path, optional
        ``ca.crt``/``server.pem``/``server.key`` as ``python -m edgecloud.deploy
        certs`` writes them; the certificate must name the advertised host. Default:
        a fresh in-memory CA and certificate for the advertised host.
    max_message_bytes : int
        Largest message accepted or sent, both ways; a larger incoming message ends
        that session only.
    max_sessions : int
        Most sessions open at once (announced and not yet closed).
    hello_timeout : float
        Seconds a connection may take to send its hello before it is dropped.

    Raises
    ------
    ValueError
        For a malformed ``bind``/``advertise``, a wildcard bind without
        ``advertise``, out-of-range limits or unusable TLS files.
    """

    def __init__(
        self,
        *,
        bind: str = "127.0.0.1:0",
        advertise: str | None = None,
        tls_dir: Path | None = None,
        max_message_bytes: int = 64 << 20,
        max_sessions: int = 256,
        hello_timeout: float = 10.0,
    ) -> None:
        try:
            bind_host, _ = split_endpoint(bind)
        except ValueError as err:
            raise ValueError(f"bind={bind!r}: {err}") from None
        if advertise is None:
            if _is_wildcard(bind_host):
                raise ValueError(
                    f"bind={bind!r} listens on every interface; pass advertise= with "
                    "the host clients dial (e.g. this machine's IP address)"
                )
            advertise = bind_host
        self._advertise = _check_advertise(advertise)
        _check_int("max_message_bytes", max_message_bytes, 1, MAX_MESSAGE_LIMIT)
        _check_int("max_sessions", max_sessions, 1, 1 << 16)
        _check_timeout(hello_timeout, name="hello_timeout", positive=True)
        self._bind = bind
        self.max_message_bytes = max_message_bytes
        self.max_sessions = max_sessions
        self._hello_timeout = hello_timeout
        self._tls: TlsMaterial = (
            tls_material((self._advertise,))
            if tls_dir is None
            else load_tls_dir(Path(tls_dir), self._advertise)
        )
        self._lock = threading.Lock()
        self._sessions: dict[str, ServerSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._grpc: Any = None
        self._port: int | None = None
        self._stopped = False

    def __enter__(self) -> SessionServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Listen on ``bind`` (TLS) in a background thread; returns once listening.

        Raises
        ------
        TransportError
            If already started or stopped, or the address cannot be bound.
        """
        with self._lock:
            if self._loop is not None or self._stopped:
                raise TransportError("a SessionServer can be started once")
            loop = asyncio.new_event_loop()
            self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop,
            args=(loop,),
            name="edgecloud-session-server",
            daemon=True,
        )
        self._thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(self._start_grpc(), loop)
            self._port = future.result(timeout=30)
        except BaseException:
            self._shutdown_loop()
            with self._lock:
                self._stopped = True
            raise
        log.info(
            "session endpoint listening on %s (bind %s)", self.endpoint, self._bind
        )

    def stop(self, grace: float = 1.0) -> None:
        """Close every session (clients see SessionClosed) and free the port.

        Idempotent. ``grace`` bounds how long streams still running are waited for.
        """
        _check_timeout(grace, name="grace")
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            sessions = list(self._sessions.values())
            self._sessions.clear()
        reason = "the session endpoint stopped"
        for session in sessions:
            if session._ended is not None:  # closed: let it flush within grace
                continue
            code = grpc.StatusCode.UNAVAILABLE
            if not self._in_loop(session._post_abort, code, reason):
                session._end(reason)
        loop = self._loop
        if loop is not None and self._grpc is not None:
            future = asyncio.run_coroutine_threadsafe(self._grpc.stop(grace), loop)
            try:
                future.result(timeout=grace + 10)
            except (FutureTimeoutError, RuntimeError) as err:
                log.warning("session endpoint did not stop cleanly: %s", err)
        self._shutdown_loop()

    # ---- announcing ---------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``host:port`` clients dial: the advertised host and the bound port."""
        if self._port is None:
            raise TransportError("the session endpoint is not started")
        return join_endpoint(self._advertise, self._port)

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate clients must trust (PEM)."""
        return self._tls.ca_pem

    def announce(
        self, *, run_id: int, node_id: int, ttl: float
    ) -> tuple[Ticket, ServerSession]:
        """Open a session for one node: its ticket (to send over Flower) and its end.

        Parameters
        ----------
        run_id, node_id : int
            Whom the session is for (keys are bound to them).
        ttl : float
            Seconds until the ticket expires (the hello must arrive before).

        Raises
        ------
        TransportError
            If the server is not running or ``max_sessions`` are open.
        ValueError
            For ids outside 0..2**64-1 or a non-positive ``ttl``.
        """
        _check_int("run_id", run_id, 0, _MAX_ID)
        _check_int("node_id", node_id, 0, _MAX_ID)
        _check_timeout(ttl, name="ttl", positive=True)
        endpoint = self.endpoint
        now = time.time()
        handshake = Handshake()
        session_id = secrets.token_hex(16)
        token = secrets.token_bytes(TOKEN_BYTES)
        with self._lock:
            if self._stopped:
                raise TransportError("the session endpoint is stopped")
            self._prune_locked(now)
            if len(self._sessions) >= self.max_sessions:
                raise TransportError(
                    f"{len(self._sessions)} sessions are open, max_sessions="
                    f"{self.max_sessions}: close finished sessions first"
                )
            session = ServerSession(
                server=self,
                run_id=run_id,
                node_id=node_id,
                session_id=session_id,
                token=token,
                expires_at=now + ttl,
                handshake=handshake,
            )
            self._sessions[session_id] = session
        ticket = Ticket(
            endpoint=endpoint,
            session_id=session_id,
            token=token,
            expires_at=now + ttl,
            server_public=handshake.public_bytes,
            ca_pem=self.ca_pem,
        )
        return ticket, session

    @property
    def open_sessions(self) -> int:
        """Sessions announced and not yet over."""
        with self._lock:
            return sum(1 for s in self._sessions.values() if s._ended is None)

    def _prune_locked(self, now: float) -> None:
        """Forget sessions that are over, and expire those never connected to."""
        for session_id, session in list(self._sessions.items()):
            session._expire_if_unused(now)
            if session._ended is not None:
                del self._sessions[session_id]

    # ---- loop thread ----------------------------------------------------------------

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def _in_loop(self, callback: Callable[..., object], *args: object) -> bool:
        """Run ``callback(*args)`` on the loop thread; False if the loop is gone."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # closed between the check and the call
            return False
        return True

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or loop.is_closed():
            return
        if thread is not None and thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(_cancel_tasks(), loop)
            try:
                future.result(timeout=10)
            except (FutureTimeoutError, RuntimeError) as err:
                log.warning("session endpoint tasks did not finish: %s", err)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        if not loop.is_running():
            loop.close()

    async def _start_grpc(self) -> int:
        limit = self.max_message_bytes + FRAME_ALLOWANCE
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # a busy port must fail here, not be shared with another process
                ("grpc.so_reuseport", 0),
            ],
            # room for connections still in their hello (refused ones included)
            maximum_concurrent_rpcs=2 * self.max_sessions,
        )
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Open": grpc.stream_stream_rpc_method_handler(self._serve)}
        )
        server.add_generic_rpc_handlers((handler,))
        credentials = grpc.ssl_server_credentials(
            [(self._tls.key_pem, self._tls.cert_pem)]
        )
        try:
            port = server.add_secure_port(self._bind, credentials)
        except RuntimeError as err:
            raise TransportError(f"cannot listen on {self._bind}: {err}") from None
        if not port:
            raise TransportError(f"cannot listen on {self._bind}")
        await server.start()
        self._grpc = server
        return int(port)

    async def _serve(self, request_iterator: object, context: Any) -> None:
        """One stream: admit the hello, then pump both directions until it ends."""
        session = await self._admit(context)
        reader = asyncio.create_task(self._read_loop(session, context))
        try:
            await context.write(encode_accept(session.session_id))
            session._on_accepted()
            log.debug("%s connected from %s", session._name(), context.peer())
            while True:
                item = await session._outbox.get()
                if isinstance(item, _Close):
                    return
                if isinstance(item, _Abort):
                    await context.abort(item.code, item.reason)
                await context.write(item)
        except asyncio.CancelledError:
            session._end("the client disconnected")
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as err:  # a failed write: the stream is gone
            session._end(f"the stream failed: {err}")
        finally:
            reader.cancel()
            session._end("the stream ended")

    async def _admit(self, context: Any) -> ServerSession:
        """The session the hello opens; aborts the RPC (changing nothing) if refused."""
        try:
            message = await asyncio.wait_for(context.read(), self._hello_timeout)
        except TimeoutError:
            await self._refuse(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no hello within {self._hello_timeout} s",
            )
        if message is grpc.aio.EOF:
            await self._refuse(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "stream ended before the hello",
            )
        try:
            hello = decode_hello(message)
        except WireError as err:
            await self._refuse(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"malformed hello: {err}"
            )
        with self._lock:
            session = self._sessions.get(hello.session_id)
        if session is None:
            await self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"unknown session {hello.session_id[:8]}: not announced by this "
                "endpoint, or already over",
            )
        try:
            session._accept(hello, time.time())
        except _RefusedError as refusal:
            await self._refuse(context, refusal.code, refusal.reason)
        return session

    @staticmethod
    async def _refuse(context: Any, code: Any, reason: str) -> NoReturn:
        log.warning("session endpoint refused %s: %s", context.peer(), reason)
        await context.abort(code, reason)
        raise AssertionError("unreachable: abort() raises")

    async def _read_loop(self, session: ServerSession, context: Any) -> None:
        """Move the client's frames into the session's inbox until its stream ends."""
        limit = self.max_message_bytes
        while True:
            try:
                message = await context.read()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the RPC failed under the read
                session._post_abort(
                    grpc.StatusCode.ABORTED, f"reading from the client failed: {err}"
                )
                return
            if message is grpc.aio.EOF:
                if not session.client_finished:
                    session._post_abort(
                        grpc.StatusCode.ABORTED,
                        "the client disconnected (its stream ended without finish(); "
                        "or it sent a message over max_message_bytes)",
                    )
                return
            kind = message[0] if message else None
            if kind == KIND_DATA and not session.client_finished:
                if len(message) - 1 > limit:
                    session._post_abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the client sent {len(message) - 1} bytes, over "
                        f"max_message_bytes={limit}",
                    )
                    return
                session._on_data(message[1:])
            elif kind == KIND_FIN and len(message) == 1 and not session.client_finished:
                session._on_fin()
            else:
                session._post_abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"unexpected frame (kind {kind}) from the client",
                )
                return


async def _cancel_tasks() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _is_wildcard(host: str) -> bool:
    return host in _WILDCARD_HOSTS or host == ""


def _check_advertise(advertise: object) -> str:
    if not isinstance(advertise, str) or not advertise.strip():
        raise ValueError(f"advertise={advertise!r}: expected a host name or IP address")
    host = advertise.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"advertise={advertise!r}: expected a host without a port"
            ) from None
    if _is_wildcard(host):
        raise ValueError(
            f"advertise={advertise!r} is a wildcard address; clients need the host "
            "they dial"
        )
    return host


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise ValueError(f"{name}={value!r}: expected an integer in {low}..{high}")


def _check_timeout(
    value: object, *, name: str = "timeout", positive: bool = False
) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        expected = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"{name}={value!r}: expected {expected} of seconds")
