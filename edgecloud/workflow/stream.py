"""Streamed sessions: the data plane of interactive protocols in real deployments.

Over Flower messages one round trip costs ~0.1 s in simulation but ~6 s deployed
(the grid and the SuperNode each poll every 3 s, and a ClientApp process starts per
message), far too slow for one exchange per optimizer step or per token. Flower's
messages stay the control plane: per round, each sampled client gets **one**
session message carrying a ticket (endpoint, session id, single-use token, expiry,
the server's ephemeral public key, the CA of the endpoint's TLS certificate). Its
handler connects to the run's gRPC endpoint (:mod:`edgecloud.transport`), proves it
holds the ticket (the key agreement is bound to the token), runs the round's
exchanges over the stream with sealed channel frames, and answers the session
message with how it ended. :class:`StreamTransport` carries the lock-step driver's
exchanges over those sessions, so a protocol's conversations are the same code
over messages and over the stream.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from logging import INFO, WARNING
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar, cast

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid

from edgecloud.channel import SessionKeys
from edgecloud.exceptions import ConfigError
from edgecloud.settings import (
    CLIENT,
    NODE,
    CommonSettings,
    Count,
    NonEmpty,
    Positive,
    Section,
)
from edgecloud.transport import (
    EndpointUnreachable,
    ServerSession,
    SessionClient,
    SessionClosed,
    SessionServer,
    Ticket,
)
from edgecloud.workflow.exchange import DroppedError, ExchangeReport, last_line
from edgecloud.workflow.traffic import Traffic

OutT_contra = TypeVar("OutT_contra", contravariant=True)
InT_co = TypeVar("InT_co", covariant=True)
OutT = TypeVar("OutT")
InT = TypeVar("InT")

# Records and keys of session messages and their replies.
SESSION = "session"  # ConfigRecord: the ticket + transport / the reply's status
TRANSPORT = "transport"  # the server's transport setting ("stream" or "auto")
CONNECT_TIMEOUT = "connect-timeout"  # seconds the client may take to connect
STATUS = "status"  # reply: STATUS_DONE or STATUS_UNREACHABLE
REASON = "reason"  # reply: why the endpoint could not be reached
STATUS_DONE = "done"
STATUS_UNREACHABLE = "unreachable"

Transports = Literal["messages", "stream", "auto"]


class StreamSettings(Section):
    """The transport keys of a capability that can run over streamed sessions.

    ``transport``: ``messages`` (one Flower message per exchange), ``stream`` (one
    per round, the exchanges on the run's gRPC endpoint) or ``auto`` (stream in a
    deployment, falling back to messages per node that cannot reach the endpoint;
    messages in simulation, where a session would hold one of the engine's few
    ClientApp workers for a whole round). ``stream-bind`` is the endpoint's
    ``host:port`` (port 0: any free one); ``stream-advertise`` the host clients
    dial (default: the bound host); ``stream-tls-dir`` a directory from
    ``python -m edgecloud.deploy certs`` ("" = a fresh CA and certificate for the
    run, whose CA travels in the ticket); ``stream-ca`` (per node) a CA the node
    trusts instead of the ticket's.
    """

    transport: Transports
    stream_bind: NonEmpty
    stream_advertise: str
    stream_tls_dir: str
    stream_connect_timeout: Positive
    stream_max_message_mib: Annotated[Count, CLIENT]
    stream_ca: Annotated[str, NODE]

    def check_server(self, common: CommonSettings) -> None:
        """The endpoint address parses; a TLS directory holds what it must."""
        host, _, port = self.stream_bind.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(
                f"run-config key '{self.key_of('stream_bind')}' has value "
                f"{self.stream_bind!r}; expected HOST:PORT (PORT 0 = any free port)"
            )
        if self.stream_tls_dir:
            folder = Path(self.stream_tls_dir).expanduser()
            lacks = [
                n
                for n in ("ca.crt", "server.pem", "server.key")
                if not (folder / n).is_file()
            ]
            if lacks:
                raise ConfigError(
                    f"run-config key '{self.key_of('stream_tls_dir')}' has value "
                    f"{self.stream_tls_dir!r}, which lacks {', '.join(lacks)}; "
                    "expected a directory from 'python -m edgecloud.deploy certs'"
                )


# Why a simulated node may never connect: the engine runs as many ClientApps at
# once as it has workers, and a session holds its worker for the whole round.
_SIMULATION_HINT = (
    " (in simulation a session holds one of the engine's ClientApp workers for the"
    " whole round, and the nodes of a SplitFed round must all connect: give it a"
    " worker per sampled node, e.g. flwr run --federation-config"
    " 'client-resources-num-cpus=1', or use transport=\"messages\")"
)


def in_simulation(grid: Grid) -> bool:
    """Whether ``grid`` is the simulation engine's."""
    from flwr.superlink.grid import InMemoryGrid

    return isinstance(grid, InMemoryGrid)


def streams_wanted(settings: StreamSettings, grid: Grid) -> bool:
    """Whether this run's exchanges go over streamed sessions."""
    if settings.transport == "messages":
        return False
    if settings.transport == "stream":
        return True
    return not in_simulation(grid)  # auto: deployments only


class StreamEndpoint:
    """The run's gRPC endpoint, started and stopped with the workflow (``with``)."""

    def __init__(self, settings: StreamSettings) -> None:
        tls = (
            Path(settings.stream_tls_dir).expanduser()
            if settings.stream_tls_dir
            else None
        )
        self.settings = settings
        self.server = SessionServer(
            bind=settings.stream_bind,
            advertise=settings.stream_advertise or None,
            tls_dir=tls,
            max_message_bytes=settings.stream_max_message_mib << 20,
        )

    def __enter__(self) -> StreamEndpoint:
        self.server.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.server.stop()


@contextlib.contextmanager
def stream_endpoint(
    settings: StreamSettings, grid: Grid, what: str
) -> Iterator[StreamEndpoint | None]:
    """The run's endpoint if its exchanges go over streams, else ``None`` (logged)."""
    if not streams_wanted(settings, grid):
        why = " in simulation" if settings.transport == "auto" else ""
        log(
            INFO,
            "%s over Flower messages (transport=%s%s)",
            what,
            settings.transport,
            why,
        )
        yield None
        return
    with StreamEndpoint(settings) as endpoint:
        log(INFO, "%s over streamed sessions on %s", what, endpoint.server.endpoint)
        yield endpoint


@dataclass
class Sessions:
    """One round's sessions: who connected, who falls back, who was dropped."""

    connected: dict[int, ServerSession] = field(default_factory=dict)
    fallback: dict[int, str] = field(default_factory=dict)  # node -> why (auto)
    failed: dict[int, str] = field(default_factory=dict)  # node -> why
    message_ids: dict[int, str] = field(default_factory=dict)  # session messages
    traffic: Traffic = field(default_factory=Traffic)

    def close(self) -> None:
        """End every stream of the round (idempotent)."""
        for session in self.connected.values():
            session.close()


def open_sessions(
    grid: Grid,
    endpoint: StreamEndpoint,
    nodes: Iterable[int],
    *,
    run_id: int,
    message_type: str,
    content: Callable[[int], RecordDict],
    group_id: str,
    label: str,
) -> Sessions:
    """Send each node its session message; wait until each connected or gave up.

    ``content(node)`` is the capability's part of the message (its control record);
    the ticket goes in :data:`SESSION`. A node that reports it cannot reach the
    endpoint falls back to messages under ``auto`` and is dropped under
    ``stream``; one that neither connects nor answers within
    ``stream-connect-timeout`` is dropped.
    """
    settings = endpoint.settings
    sessions = Sessions()
    messages: dict[int, Message] = {}
    pending: dict[int, ServerSession] = {}
    for node in nodes:
        ticket, session = endpoint.server.announce(
            run_id=run_id, node_id=node, ttl=settings.stream_connect_timeout
        )
        record = content(node)
        record[SESSION] = ConfigRecord(
            {
                **ticket.to_config(),
                TRANSPORT: settings.transport,
                CONNECT_TIMEOUT: settings.stream_connect_timeout / 4,
            }
        )
        messages[node] = Message(
            record, dst_node_id=node, message_type=message_type, group_id=group_id
        )
        pending[node] = session
    sessions.traffic.sent(messages.values())
    ids = list(grid.push_messages(list(messages.values())))
    sessions.message_ids = {
        node: mid for node, mid in zip(messages, ids, strict=True) if mid
    }
    node_of = {mid: node for node, mid in sessions.message_ids.items()}
    deadline = time.monotonic() + settings.stream_connect_timeout
    while pending and time.monotonic() < deadline:
        for node in list(pending):
            try:
                pending[node].wait_connected(0.0)
            except TimeoutError:
                continue  # not yet
            except SessionClosed as err:  # ended before a client came (expired...)
                pending.pop(node)
                sessions.failed[node] = f"session ended unused: {last_line(str(err))}"
                continue
            sessions.connected[node] = pending.pop(node)
        early = [mid for node, mid in sessions.message_ids.items() if node in pending]
        for reply in grid.pull_messages(early) if early else ():
            node = node_of.get(reply.metadata.reply_to_message_id, -1)
            if node in pending:
                pending.pop(node).close()
                sessions.traffic.received([reply])
                _gave_up(sessions, node, reply, settings.transport)
        if pending:
            time.sleep(0.05)
    for node, session in pending.items():
        session.close()
        sessions.failed[node] = (
            f"did not connect within {settings.stream_connect_timeout:g} s"
            + (_SIMULATION_HINT if in_simulation(grid) else "")
        )
    for node, reason in sessions.failed.items():
        log(
            WARNING,
            "%s: dropping node %d before its first step: %s",
            label,
            node,
            reason,
        )
    for node, reason in sessions.fallback.items():
        log(
            WARNING,
            "%s: node %d cannot reach the stream endpoint %s (%s); its steps go "
            "over Flower messages",
            label,
            node,
            endpoint.server.endpoint,
            reason,
        )
    return sessions


def _gave_up(sessions: Sessions, node: int, reply: Message, transport: str) -> None:
    """Sort a node that answered its session message without connecting."""
    if reply.has_error():
        reason = last_line(reply.error.reason)
        sessions.failed[node] = f"client error (code {reply.error.code}): {reason}"
        return
    record = reply.content.config_records.get(SESSION, ConfigRecord())
    reason = str(record.get(REASON, "it did not say why"))
    if record.get(STATUS) == STATUS_UNREACHABLE and transport == "auto":
        sessions.fallback[node] = reason
    else:
        sessions.failed[node] = f"did not connect: {reason}"


def collect_replies(
    grid: Grid,
    sessions: Sessions,
    timeout: float,
    label: str,
    finished: Collection[int],
) -> dict[int, Message]:
    """The session messages' replies of the ``finished`` nodes.

    Each node answers its session message when its session ended. A node dropped
    mid-session (its device died, its session failed) may never answer, so its
    reply is not waited for.
    """
    wanted = {
        mid: node
        for node, mid in sessions.message_ids.items()
        if node in sessions.connected and node in finished
    }
    replies: dict[int, Message] = {}
    deadline = time.monotonic() + timeout
    while wanted and time.monotonic() < deadline:
        for reply in grid.pull_messages(list(wanted)):
            node = wanted.pop(reply.metadata.reply_to_message_id, None)
            if node is None:
                continue
            replies[node] = reply
            sessions.traffic.received([reply])
            if reply.has_error():
                log(
                    WARNING,
                    "%s: node %d's session ended with an error: %s",
                    label,
                    node,
                    last_line(reply.error.reason),
                )
        if wanted:
            time.sleep(0.05)
    for node in wanted.values():
        log(WARNING, "%s: node %d did not answer its session message", label, node)
    return replies


def connect_client(
    msg: Message,
    *,
    run_id: int,
    node_id: int,
    ca_pem: bytes | None,
    max_message_bytes: int,
) -> tuple[SessionClient, SessionKeys] | Message:
    """Client side: connect with the session message's ticket.

    Returns the connected client and its keys, or (``transport = "auto"``) the
    reply that tells the server this node cannot reach the endpoint, so its steps
    go over messages. Under ``stream`` an unreachable endpoint raises.
    """
    record = msg.content.config_records[SESSION]
    client = SessionClient(
        Ticket.from_config(record),
        run_id=run_id,
        node_id=node_id,
        ca_pem=ca_pem,
        connect_timeout=float(cast(float, record[CONNECT_TIMEOUT])),
        max_message_bytes=max_message_bytes,
    )
    try:
        keys = client.connect()
    except EndpointUnreachable as err:
        if record.get(TRANSPORT) != "auto":
            raise
        reply = ConfigRecord({STATUS: STATUS_UNREACHABLE, REASON: str(err)})
        return Message(RecordDict({SESSION: reply}), reply_to=msg)
    return client, keys


def session_messages(client: SessionClient, timeout: float) -> Iterator[bytes]:
    """Client side: the server's messages of a session, until the caller stops."""
    while True:
        received = client.receive(timeout)
        if received is None:
            raise SessionClosed("the server ended the session before its last step")
        yield received


def end_session(client: SessionClient, timeout: float) -> None:
    """Client side: say the last message was sent, wait until the server closes.

    Waiting lets the last message reach the server before the connection goes
    (closing at once could cancel it in flight).
    """
    client.finish()
    with contextlib.suppress(TimeoutError, SessionClosed):
        while client.receive(timeout) is not None:
            pass  # nothing is sent after a session's last step


class StreamCodec(Protocol[OutT_contra, InT_co]):
    """Turns a protocol's outgoing values into stream messages and back."""

    def encode(self, node: int, outgoing: OutT_contra, exchange: int) -> bytes:
        """The stream message for ``node`` at exchange ``exchange``."""

    def decode(self, node: int, message: bytes, exchange: int) -> InT_co:
        """What the conversation receives; raises a drop error on bad content."""


class StreamTransport(Generic[OutT, InT]):
    """Carries the lock-step driver's exchanges over connected sessions.

    Every node's message is sent first (the clients compute in parallel), then the
    replies are read in node order, each within what is left of ``timeout``.
    """

    def __init__(
        self,
        sessions: Mapping[int, ServerSession],
        codec: StreamCodec[OutT, InT],
        *,
        timeout: float,
    ) -> None:
        self.sessions, self.codec, self.timeout = sessions, codec, timeout

    def round_trip(
        self, outgoing: Mapping[int, OutT], exchange: int, report: ExchangeReport
    ) -> dict[int, InT | Exception]:
        """Send every node its stream message, then read each reply."""
        decoded: dict[int, InT | Exception] = {}
        for node, out in outgoing.items():
            message = self.codec.encode(node, out, exchange)
            try:
                self.sessions[node].send(message)
            except SessionClosed as err:
                decoded[node] = DroppedError(f"stream closed: {last_line(str(err))}")
                continue
            report.traffic.bytes_down += len(message)
        deadline = time.monotonic() + self.timeout
        for node in outgoing:
            if node in decoded:
                continue
            try:
                reply = self.sessions[node].receive(
                    max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                decoded[node] = DroppedError(
                    f"no reply on the stream within {self.timeout:g} s"
                )
                continue
            except SessionClosed as err:
                decoded[node] = DroppedError(f"stream closed: {last_line(str(err))}")
                continue
            report.traffic.bytes_up += len(reply)
            decoded[node] = _decode(self.codec, node, reply, exchange)
        return decoded


def _decode(
    codec: StreamCodec[Any, InT], node: int, message: bytes, exchange: int
) -> InT | Exception:
    try:
        return codec.decode(node, message, exchange)
    except Exception as err:  # judged by the driver: drop errors drop, bugs re-raise
        return err
