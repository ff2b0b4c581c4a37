"""STIP secure inference as a Flower workflow (thesis chapter 4, corrected).

Yuan et al., "Secure Transformer Inference Made Non-interactive" / thesis ch. 4:
a model developer permutes the model's feature space; the ServerApp (model
server) runs the permuted model on permuted embeddings; each ClientApp (data
owner) embeds locally, permutes, and un-permutes what comes back.

Each data owner's generation is one conversation on the shared lock-step driver;
one exchange = one message to every active client:

* exchange 1 (``phase=start``): the client answers with its permuted prompt (or
  input) embeddings ``(T, d)``;
* each later exchange carries the permuted logits of the client's last position;
  the client un-permutes, picks the next token and answers with that token's
  permuted embedding ``(1, d)`` - or ``done`` once it has generated
  ``max-new-tokens``. Classifiers (BERT, ViT) finish after one forward.

The server keeps a KV cache per client and batches clients at the same position
into one forward (:class:`BatchedForward`, run once per exchange). Generating ``n``
tokens costs ``n + 1`` message round trips (~0.1 s each in simulation, ~5 s in
deployment).

What the client **must** do: answer ``query.stip_step`` with ``embeds`` (float32,
``(T, d)``) or ``done=True``; never send plaintext embeddings or tokens.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from logging import INFO
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid

from edgecloud.capabilities.stip import keys as k
from edgecloud.channel import (
    SERVER_TO_CLIENT,
    ChannelError,
    FrameContext,
    SecureChannel,
    SessionKeys,
)
from edgecloud.channel.envelope import open_control, pack, seal_control, unpack
from edgecloud.results import RoundRecord, RunHistory, RunRecorder
from edgecloud.workflow.exchange import (
    Conversation,
    DroppedError,
    ExchangeReport,
    LockstepExchange,
    MessageTransport,
    RoutedTransport,
    Transport,
)
from edgecloud.workflow.records import reply_arrays, reply_config, to_record
from edgecloud.workflow.stream import (
    Sessions,
    StreamEndpoint,
    StreamTransport,
    collect_replies,
    open_sessions,
)
from edgecloud.workflow.traffic import Traffic

# What a data owner's reply carries: its permuted embeddings, or None when done.
Embeds = torch.Tensor | None


class PermutedModelServer(Protocol):
    """What the workflow needs from the model server (``stip.StipServer``)."""

    @property
    def hidden_size(self) -> int:
        """Width of the permuted embeddings."""

    @property
    def is_generator(self) -> bool:
        """True for language models (token by token), False for classifiers."""

    def step(self, requests: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Extend sessions by permuted embeddings; permuted last-position logits."""

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        """Permuted logits of a batch of permuted embeddings (classifiers)."""

    def end(self, session_id: str) -> None:
        """Drop a session's cache."""


@dataclass
class Pending:
    """Permuted logits for one client, filled in by the exchange's batched forward."""

    logits: torch.Tensor | None = None


@dataclass
class StipOut:
    """What the server sends: the start signal, or the logits of the last forward."""

    pending: Pending | None = None


class BatchedForward:
    """Collects every client's new embeddings of an exchange; runs them at once."""

    def __init__(self, server: PermutedModelServer) -> None:
        self.server = server
        self._requests: dict[str, tuple[torch.Tensor, Pending]] = {}
        self.seconds = 0.0  # server compute of the last flush
        self.positions = 0  # new positions of the last flush

    def submit(self, session: str, embeds: torch.Tensor) -> Pending:
        """Queue ``embeds`` for ``session``; the result arrives at :meth:`flush`."""
        pending = Pending()
        self._requests[session] = (embeds, pending)
        return pending

    def flush(self) -> None:
        """One batched forward for everything queued since the last flush."""
        started = time.perf_counter()
        requests = {sid: embeds for sid, (embeds, _) in self._requests.items()}
        if self.server.is_generator:
            outputs = self.server.step(requests) if requests else {}
        else:  # classifiers: one forward per client batch, no cache
            outputs = {
                sid: self.server.forward(e if e.dim() == 3 else e[None])
                for sid, e in requests.items()
            }
        for sid, (_, pending) in self._requests.items():
            pending.logits = outputs[sid]
        self.positions = sum(int(e.shape[-2]) for e in requests.values())
        self.seconds = time.perf_counter() - started
        self._requests = {}


class StipCodec:
    """Messages of the STIP protocol: control + logits down, embeddings up."""

    message_type = k.MSG_STEP

    def __init__(self, server: PermutedModelServer) -> None:
        self.server = server

    def encode(self, node: int, outgoing: StipOut, exchange: int) -> RecordDict:
        """Round number, phase and (after the start) the permuted logits."""
        phase = k.PHASE_START if outgoing.pending is None else k.PHASE_CONTINUE
        content = RecordDict(
            {k.CONTROL: ConfigRecord({k.ROUND: exchange + 1, k.PHASE: phase})}
        )
        if outgoing.pending is not None:
            assert outgoing.pending.logits is not None  # flushed before sending
            logits = outgoing.pending.logits.detach().cpu().numpy()
            content[k.LOGITS] = to_record({k.LOGITS_ARRAY: logits.astype(np.float32)})
        return content

    def decode(self, node: int, reply: Message, exchange: int) -> torch.Tensor | None:
        """The reply's permuted embeddings, ``None`` when the client is done."""
        if reply_config(reply, k.CONTROL).get(k.DONE, False):
            return None
        record = reply_arrays(reply, k.EMBEDS)
        if k.EMBEDS_ARRAY not in record:
            raise DroppedError(f"'{k.EMBEDS}' has no '{k.EMBEDS_ARRAY}' array")
        return checked_embeds(record[k.EMBEDS_ARRAY].numpy(), self.server)


class StreamStipCodec:
    """The same exchanges over a streamed session: sealed control + tensor frames.

    Logits down and embeddings up travel in :mod:`edgecloud.channel` frames sealed
    with the session's keys (agreed when the client proved it holds its ticket).
    """

    def __init__(
        self,
        server: PermutedModelServer,
        keys: Mapping[int, SessionKeys],
        run_id: int,
    ) -> None:
        self.server, self.run_id = server, run_id
        self._channels = {
            node: SecureChannel(key, send_direction=SERVER_TO_CLIENT)
            for node, key in keys.items()
        }

    def context(self, node: int, exchange: int) -> FrameContext:
        """Where a frame of this generation belongs (authenticated, never sent)."""
        return FrameContext(self.run_id, node, k.MSG_SESSION, 0, exchange)

    def encode(self, node: int, outgoing: StipOut, exchange: int) -> bytes:
        """Round and phase, and (after the start) the sealed permuted logits."""
        channel, where = self._channels[node], self.context(node, exchange)
        phase = k.PHASE_START if outgoing.pending is None else k.PHASE_CONTINUE
        frames = [seal_control(channel, {k.ROUND: exchange + 1, k.PHASE: phase}, where)]
        if outgoing.pending is not None:
            assert outgoing.pending.logits is not None  # flushed before sending
            logits = outgoing.pending.logits.detach().cpu().numpy()
            frames.append(
                channel.seal({k.LOGITS_ARRAY: logits.astype(np.float32)}, where)
            )
        return pack(frames)

    def decode(self, node: int, message: bytes, exchange: int) -> torch.Tensor | None:
        """The permuted embeddings, ``None`` when the client is done."""
        channel, where = self._channels[node], self.context(node, exchange)
        frames = unpack(message)
        if open_control(channel, frames[0], where).get(k.DONE, False):
            return None
        if len(frames) < 2:
            raise DroppedError("stream reply carries no embeddings")
        opened = channel.open(frames[1], where, {k.EMBEDS_ARRAY: None})
        return checked_embeds(opened[k.EMBEDS_ARRAY], self.server)


def checked_embeds(
    embeds: npt.NDArray[Any], server: PermutedModelServer
) -> torch.Tensor:
    """Permuted embeddings a client sent, if they fit the model (else drop it)."""
    d = server.hidden_size
    expected = f"(tokens, {d}) or (batch, tokens, {d})"
    if embeds.dtype != np.float32 or embeds.ndim not in (2, 3):
        raise DroppedError(
            f"embeds are {embeds.dtype} {embeds.shape}; expected float32 {expected}"
        )
    if embeds.shape[-1] != d or 0 in embeds.shape:
        raise DroppedError(f"embeds have shape {embeds.shape}; expected {expected}")
    if server.is_generator and embeds.ndim != 2:
        raise DroppedError(f"embeds have shape {embeds.shape}; expected (tokens, {d})")
    if not np.isfinite(embeds).all():
        raise DroppedError("embeds contain NaN or infinity")
    return torch.from_numpy(np.array(embeds))


@dataclass
class StipTotals:
    """The run's totals, written to results.json's ``summary``."""

    rounds: list[RoundRecord] = field(default_factory=list)
    server_seconds: float = 0.0
    setup_seconds: float = 0.0  # session messages until every stream connected
    generated_tokens: int = 0
    dropped_nodes: list[int] = field(default_factory=list)
    session_traffic: Traffic = field(default_factory=Traffic)  # session messages

    def summary(self) -> dict[str, float | list[int]]:
        """Totals and rates over the run."""
        seconds = sum(r.seconds for r in self.rounds)
        steps = [r.seconds for r in self.rounds if r.round > 1]
        return {
            "rounds": float(len(self.rounds)),
            "seconds": seconds,
            "server-seconds": self.server_seconds,
            "generated-tokens": float(self.generated_tokens),
            "tokens-per-second": self.generated_tokens / seconds if seconds else 0.0,
            "session-setup-seconds": self.setup_seconds,
            "tokens-per-second-with-setup": (
                self.generated_tokens / (seconds + self.setup_seconds)
                if seconds
                else 0.0
            ),
            "seconds-per-round-trip": float(np.mean(steps)) if steps else 0.0,
            "bytes-up": float(
                sum(r.bytes_up for r in self.rounds) + self.session_traffic.bytes_up
            ),
            "bytes-down": float(
                sum(r.bytes_down for r in self.rounds) + self.session_traffic.bytes_down
            ),
            "dropped-nodes": list(self.dropped_nodes),
        }


class SecureInference:
    """Serve a permuted model to every connected client until all are done.

    Parameters
    ----------
    server : PermutedModelServer
        The permuted model (it never holds a permutation).
    max_rounds : int
        Upper bound on exchanges (``max-new-tokens + 1`` for generation).
    round_timeout : float
        Seconds to wait for the replies of one exchange.
    endpoint : StreamEndpoint, optional
        The run's streamed-session endpoint; ``None``: one Flower message per
        exchange.
    run_id : int
        Bound into the stream's frames.
    """

    def __init__(
        self,
        server: PermutedModelServer,
        max_rounds: int,
        round_timeout: float,
        endpoint: StreamEndpoint | None = None,
        run_id: int = 0,
    ) -> None:
        self.server = server
        self.max_rounds = max_rounds
        self.round_timeout = round_timeout
        self.endpoint, self.run_id = endpoint, run_id

    def run(self, grid: Grid, nodes: list[int], recorder: RunRecorder) -> RunHistory:
        """Run the protocol with ``nodes``, one results row per exchange."""
        recorder.start(False)
        totals = StipTotals()
        batch = BatchedForward(self.server)

        def record(report: ExchangeReport) -> None:
            row = RoundRecord(
                round=report.index + 1,
                bytes_up=report.traffic.bytes_up,
                bytes_down=report.traffic.bytes_down,
                seconds=report.seconds,
                train_replies=len(report.nodes) - len(report.dropped),
                failures=len(report.dropped),
                extra={
                    "clients": float(len(report.nodes)),
                    "new-positions": float(batch.positions),
                    "server-seconds": batch.seconds,
                    "finished": float(len(report.finished)),
                },
            )
            totals.rounds.append(row)
            totals.server_seconds += batch.seconds
            totals.dropped_nodes += sorted(report.dropped)
            recorder.record_round(row, None, {})

        def end_session(node: int, reason: str) -> None:
            self.server.end(str(node))

        messages: Transport[StipOut, Embeds] = MessageTransport(
            grid, StipCodec(self.server), timeout=self.round_timeout, group_id="stip"
        )
        routes: dict[int, Transport[StipOut, Embeds]] = dict.fromkeys(nodes, messages)
        sessions = None
        try:
            if self.endpoint is not None:
                opened = time.perf_counter()
                sessions = self._open(grid, nodes)
                totals.setup_seconds = time.perf_counter() - opened
                totals.dropped_nodes += sorted(sessions.failed)
                stream: Transport[StipOut, Embeds] = StreamTransport(
                    sessions.connected,
                    StreamStipCodec(
                        self.server,
                        {n: s.keys for n, s in sessions.connected.items()},
                        self.run_id,
                    ),
                    timeout=self.round_timeout,
                )
                routes = dict.fromkeys(sessions.connected, stream) | dict.fromkeys(
                    sessions.fallback, messages
                )
            exchange: LockstepExchange[StipOut, Embeds, int] = LockstepExchange(
                RoutedTransport(routes),
                label="stip",
                drop_on=(ChannelError,),
                prepare_next=batch.flush,
                on_drop=end_session,
                after_exchange=record,
            )
            outcome = exchange.run(
                {n: self._converse(n, batch) for n in nodes if n in routes}
            )
            if sessions is not None and self.endpoint is not None:
                sessions.close()
                timeout = self.endpoint.settings.stream_connect_timeout
                collect_replies(grid, sessions, timeout, "stip", outcome.results.keys())
                totals.session_traffic.add(sessions.traffic)
        except BaseException:
            if sessions is not None:
                sessions.close()
            recorder.finish(status="failed")
            raise
        totals.generated_tokens = sum(outcome.results.values())
        recorder.set_summary(totals.summary())
        log(INFO, "stip summary: %s", totals.summary())
        return recorder.finish()

    def _open(self, grid: Grid, nodes: list[int]) -> Sessions:
        """One session message per data owner; wait for their connections."""
        assert self.endpoint is not None
        content = RecordDict({k.CONTROL: ConfigRecord({k.RUN_ID: self.run_id})})
        return open_sessions(
            grid,
            self.endpoint,
            nodes,
            run_id=self.run_id,
            message_type=k.MSG_SESSION,
            content=lambda node: RecordDict(dict(content)),
            group_id="stip",
            label="stip",
        )

    def _converse(
        self, node: int, batch: BatchedForward
    ) -> Conversation[StipOut, Embeds, int]:
        """One data owner's generation; returns the tokens it sampled."""
        session = str(node)
        tokens = 0
        embeds = yield StipOut()  # exchange 1: the permuted prompt
        for _ in range(self.max_rounds - 1):
            if embeds is None:
                break
            embeds = yield StipOut(batch.submit(session, embeds))
            if self.server.is_generator:
                tokens += 1  # every answer to logits sampled one token (done too)
        self.server.end(session)  # done, or still generating when rounds ran out
        return tokens
