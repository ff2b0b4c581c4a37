"""Lock-step exchanges over per-node conversations: the driver of interactive protocols.

A protocol that needs many round trips per round (a split-learning step, a STIP
token, ...) writes the server's half of one client's round as a generator, so that
it reads like the paper::

    def converse(node):
        reply = yield Outgoing(...)        # exchange 0
        while not done(reply):
            reply = yield Outgoing(...)    # exchange 1, 2, ...
        return result                      # the client's result of the round

:class:`LockstepExchange` advances every client's conversation together: exchange
``k`` sends the ``k``-th outgoing value of every conversation still running, then
hands each node's decoded reply to its conversation, in node order (so a shared
server model sees the same sequence of updates whatever carries the bytes). A
:class:`Transport` carries one exchange: :class:`MessageTransport` over Flower
messages (one ``grid.send_and_receive`` per exchange, a :class:`Codec` turning
values into records), ``workflow.stream.StreamTransport`` over the run's streamed
sessions, :class:`RoutedTransport` a mix (per node).

A node whose reply is missing, an error, or malformed is dropped (logged with the
node the message was sent to and why) and the others go on; a malformed reply is
anything that raises one of ``drop_on`` (by default :class:`DroppedError`) while it
is decoded or read. Any other exception is a bug and propagates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from logging import WARNING
from typing import Generic, Protocol, TypeVar

from flwr.app import Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid

from edgecloud.workflow.traffic import Traffic

OutT = TypeVar("OutT")
InT = TypeVar("InT")
ResultT = TypeVar("ResultT")
OutT_contra = TypeVar("OutT_contra", contravariant=True)
InT_co = TypeVar("InT_co", covariant=True)

# The server's half of one client's round: yields what to send, receives the
# decoded reply, returns the client's result.
Conversation = Generator[OutT, InT, ResultT]

_REASON_CHARS = 300


class DroppedError(Exception):
    """A node leaves the conversation: no reply, an error reply or unusable content."""


@dataclass
class ExchangeReport:
    """What one lock-step exchange did (passed to ``after_exchange``)."""

    index: int
    nodes: list[int]
    finished: list[int] = field(default_factory=list)
    dropped: dict[int, str] = field(default_factory=dict)
    traffic: Traffic = field(default_factory=Traffic)
    seconds: float = 0.0


class Transport(Protocol[OutT_contra, InT_co]):
    """Carries one exchange: every node's outgoing value there, its reply back."""

    def round_trip(
        self, outgoing: Mapping[int, OutT_contra], exchange: int, report: ExchangeReport
    ) -> Mapping[int, InT_co | Exception]:
        """Each node's decoded reply, or the exception that drops the node.

        Counts the bytes both ways into ``report.traffic``.
        """


class Codec(Protocol[OutT_contra, InT_co]):
    """Turns a protocol's outgoing values into message content and replies back."""

    @property
    def message_type(self) -> str:
        """The Flower message type of every message of the protocol."""

    def encode(self, node: int, outgoing: OutT_contra, exchange: int) -> RecordDict:
        """Content of the message for ``node`` at exchange ``exchange``."""

    def decode(self, node: int, reply: Message, exchange: int) -> InT_co:
        """What the conversation receives; raises a drop error on bad content."""


class MessageTransport(Generic[OutT, InT]):
    """One ``grid.send_and_receive`` per exchange (Flower messages).

    Parameters
    ----------
    grid : Grid
        Flower's grid of the running ServerApp.
    codec : Codec
        Encodes outgoing values, decodes replies.
    timeout : float
        Seconds to wait for the replies of one exchange.
    group_id : str
        Flower group id of the messages (the server round).
    """

    def __init__(
        self, grid: Grid, codec: Codec[OutT, InT], *, timeout: float, group_id: str
    ) -> None:
        self.grid, self.codec = grid, codec
        self.timeout, self.group_id = timeout, group_id

    def round_trip(
        self, outgoing: Mapping[int, OutT], exchange: int, report: ExchangeReport
    ) -> dict[int, InT | Exception]:
        """Send every node its message at once; decode each reply."""
        messages = {
            node: Message(
                self.codec.encode(node, out, exchange),
                dst_node_id=node,
                message_type=self.codec.message_type,
                group_id=self.group_id,
            )
            for node, out in outgoing.items()
        }
        report.traffic.sent(messages.values())
        replies = self._send_and_receive(messages)
        decoded: dict[int, InT | Exception] = {}
        for node in outgoing:
            reply = replies.get(node)
            if reply is None:
                decoded[node] = DroppedError(
                    f"no reply within the timeout ({self.timeout:g} s)"
                )
            elif reply.has_error():
                reason = last_line(reply.error.reason)
                decoded[node] = DroppedError(
                    f"client error (code {reply.error.code}): {reason}"
                )
            else:
                report.traffic.received([reply])
                decoded[node] = _call(self.codec.decode, node, reply, exchange)
        return decoded

    def _send_and_receive(self, messages: dict[int, Message]) -> dict[int, Message]:
        """Replies by the node each message was sent to.

        An error reply may come from the SuperLink rather than the node (its
        ``src_node_id`` is then the SuperLink's), so replies are matched to the
        message they answer, whose id the grid set when it pushed it.
        """
        replies = list(
            self.grid.send_and_receive(messages.values(), timeout=self.timeout)
        )
        node_of = {m.metadata.message_id: node for node, m in messages.items()}
        return {
            node_of.get(r.metadata.reply_to_message_id, r.metadata.src_node_id): r
            for r in replies
        }


class RoutedTransport(Generic[OutT, InT]):
    """Each node's exchange over its own transport (e.g. stream, or messages)."""

    def __init__(self, routes: Mapping[int, Transport[OutT, InT]]) -> None:
        self.routes = routes

    def round_trip(
        self, outgoing: Mapping[int, OutT], exchange: int, report: ExchangeReport
    ) -> dict[int, InT | Exception]:
        """One round trip per transport, with the nodes routed to it."""
        groups: dict[int, tuple[Transport[OutT, InT], dict[int, OutT]]] = {}
        for node, out in outgoing.items():
            transport = self.routes[node]
            groups.setdefault(id(transport), (transport, {}))[1][node] = out
        decoded: dict[int, InT | Exception] = {}
        for transport, group in groups.values():
            decoded.update(transport.round_trip(group, exchange, report))
        return decoded


@dataclass
class Outcome(Generic[ResultT]):
    """Results of the conversations that finished, reasons of those dropped."""

    results: dict[int, ResultT] = field(default_factory=dict)
    dropped: dict[int, str] = field(default_factory=dict)
    traffic: Traffic = field(default_factory=Traffic)


class LockstepExchange(Generic[OutT, InT, ResultT]):
    """Drive per-node conversations in lock-step over a transport.

    Parameters
    ----------
    transport : Transport
        Carries each exchange (Flower messages, streamed sessions, or both).
    label : str
        Prefix of log lines, e.g. ``"splitfed-v1 round 3"``.
    drop_on : tuple of exception types
        Exceptions that mean "this node's reply is unusable": the node is dropped.
    prepare_next : callable, optional
        Called whenever every running conversation has yielded its next outgoing
        value, before any is sent (e.g. one batched forward for all nodes whose
        results the outgoing values refer to); its time counts to the exchange
        whose replies it serves.
    on_drop : callable, optional
        ``on_drop(node, reason)``: forget what the protocol kept for the node.
    after_exchange : callable, optional
        ``after_exchange(report)``: per-exchange measurements.
    """

    def __init__(
        self,
        transport: Transport[OutT, InT],
        *,
        label: str,
        drop_on: tuple[type[Exception], ...] = (DroppedError,),
        prepare_next: Callable[[], None] | None = None,
        on_drop: Callable[[int, str], None] | None = None,
        after_exchange: Callable[[ExchangeReport], None] | None = None,
    ) -> None:
        self.transport, self.label = transport, label
        self.drop_on: tuple[type[Exception], ...] = (DroppedError, *drop_on)
        self.prepare_next, self.on_drop = prepare_next, on_drop
        self.after_exchange = after_exchange

    def run(
        self, conversations: Mapping[int, Conversation[OutT, InT, ResultT]]
    ) -> Outcome[ResultT]:
        """Run every conversation to its end (or its node's drop)."""
        outcome: Outcome[ResultT] = Outcome()
        pending = {node: next(conv) for node, conv in conversations.items()}
        self._prepare()
        index = 0
        while pending:
            started = time.perf_counter()
            report = ExchangeReport(index=index, nodes=list(pending))
            replies = self.transport.round_trip(pending, index, report)
            following: dict[int, OutT] = {}
            for node in pending:  # node order: the same updates, whatever transport
                try:
                    incoming = replies[node]
                    if isinstance(incoming, Exception):
                        raise incoming
                    following[node] = conversations[node].send(incoming)
                except StopIteration as done:
                    outcome.results[node] = done.value
                    report.finished.append(node)
                except self.drop_on as err:
                    report.dropped[node] = _reason(err)
                    self._drop(node, index, report.dropped[node])
            self._prepare()
            report.traffic.exchanges = 1
            report.seconds = time.perf_counter() - started
            outcome.traffic.add(report.traffic)
            outcome.dropped.update(report.dropped)
            if self.after_exchange is not None:
                self.after_exchange(report)
            pending = following
            index += 1
        return outcome

    def _prepare(self) -> None:
        if self.prepare_next is not None:
            self.prepare_next()

    def _drop(self, node: int, index: int, reason: str) -> None:
        log(
            WARNING,
            "%s: dropping node %d at exchange %d: %s",
            self.label,
            node,
            index,
            reason,
        )
        if self.on_drop is not None:
            self.on_drop(node, reason)


def _call(
    decode: Callable[[int, Message, int], InT], node: int, reply: Message, index: int
) -> InT | Exception:
    """``decode(...)``, or the exception it raised (judged by the driver)."""
    try:
        return decode(node, reply, index)
    except Exception as err:  # judged by the driver: drop errors drop, bugs re-raise
        return err


def last_line(text: str | None) -> str:
    """The last non-empty line of an error text (a traceback's message), capped."""
    lines = (text or "").strip().splitlines()
    return (lines[-1] if lines else "")[:_REASON_CHARS]


def _reason(err: Exception) -> str:
    return last_line(str(err)) or type(err).__name__
