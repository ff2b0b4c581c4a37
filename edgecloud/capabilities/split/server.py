"""SplitNN, U-shaped split learning and SplitFed v1/v2: the server's workflow.

Vepakomma et al. 2018 (SplitNN, U-shaped); Thapa et al. 2022, arXiv:2004.12088
(SplitFed). ``Strategy.start()`` has one exchange per round; split learning needs one
per optimizer step, so each client's round is a conversation on the shared
lock-step driver (:mod:`edgecloud.workflow.exchange`).

What the ClientApp must do (:mod:`edgecloud.capabilities.split.client`), per
message of type :data:`~edgecloud.capabilities.split.keys.MSG_STEP`:

1. On ``start``: agree on keys (``server-pub`` -> ``client-pub``), load the device
   weights sent in ``front`` (or keep its own between SplitFed syncs), restore its
   optimizer from ``context.state`` and report ``num-steps`` of the round.
2. Apply ``grad`` (gradient of the activations of ``grad-step``) by recomputing the
   forward pass of that step, then take an optimizer step.
3. U-shaped: run its head on ``middle`` (step ``head-step``), reply ``grad-middle``.
4. Send ``activations`` (and ``labels``, except U-shaped) of ``want-step``.
5. On ``final``: reply the trained device weights and ``num-examples``.

All tensors travel in one sealed :mod:`edgecloud.channel` frame per message.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from itertools import pairwise
from logging import INFO, WARNING
from typing import Any, Protocol

import numpy as np
import torch
from flwr.app import ConfigRecord, RecordDict
from flwr.app.typing import ConfigRecordValues
from flwr.common.logger import log
from flwr.serverapp import Grid

from edgecloud.capabilities.split import keys as k
from edgecloud.capabilities.split.aggregation import weighted_mean
from edgecloud.capabilities.split.config import SplitConfig
from edgecloud.capabilities.split.framing import (
    SealedCodec,
    SplitIn,
    SplitOut,
    StreamSealedCodec,
)
from edgecloud.channel import ChannelError, ErrorFeedback, weights_digest
from edgecloud.results import RoundRecord, RunHistory, RunRecorder
from edgecloud.settings import CommonSettings
from edgecloud.types import NDArray
from edgecloud.workflow.exchange import (
    Conversation,
    DroppedError,
    ExchangeReport,
    LockstepExchange,
    MessageTransport,
    Outcome,
    RoutedTransport,
    Transport,
)
from edgecloud.workflow.keys import NUM_EXAMPLES, TRAIN_LOSS
from edgecloud.workflow.nodes import sample_nodes
from edgecloud.workflow.records import value_of
from edgecloud.workflow.stream import (
    StreamEndpoint,
    StreamTransport,
    collect_replies,
    open_sessions,
)
from edgecloud.workflow.traffic import Traffic


class ServerPart(Protocol):
    """The cloud part of one model copy (see ``tasks.split_steps.ServerSide``)."""

    module: torch.nn.Module

    def loss_step(self, activations: NDArray, labels: NDArray) -> tuple[NDArray, float]:
        """Loss on the server; return d loss / d activations and the loss."""

    def forward(self, activations: NDArray) -> NDArray:
        """U-shaped: the middle's output."""

    def backward_step(self, activations: NDArray, grad_out: NDArray) -> NDArray:
        """U-shaped: backpropagate the head's gradient, step, return d / d input."""

    def infer(self, activations: NDArray, predictions: bool) -> NDArray:
        """Eval-mode inference: predictions, or (U-shaped) the middle's output."""

    def full_state(self) -> dict[str, NDArray]:
        """State of the full model this part belongs to."""

    def load_full_state(self, state: dict[str, NDArray]) -> None:
        """Load a full-model state (optimizer state kept)."""


class SplitOps(Protocol):
    """What the workflow needs from a task (see ``tasks.split_steps.TaskSplitOps``)."""

    def new_model(self, state: dict[str, NDArray] | None = None) -> torch.nn.Module:
        """A full model (optionally loaded)."""

    def device_keys(self, ushaped: bool) -> list[str]:
        """Full-state keys of the device part(s)."""

    def server_side(self, model: Any, ushaped: bool) -> ServerPart:
        """The cloud part of ``model`` with a fresh optimizer."""

    def evaluate(self, state: dict[str, NDArray]) -> dict[str, float]:
        """Loss and accuracy of the assembled model."""

    def auxiliary_state(self) -> dict[str, NDArray]:
        """A fresh local-loss auxiliary head, keyed ``aux.*``."""

    def smashed_shape(self) -> tuple[int, ...]:
        """One example's smashed data shape (batch left out)."""

    @property
    def num_classes(self) -> int:
        """Labels are 0 .. num_classes - 1."""


@dataclass
class ClientRound:
    """What one client's conversation returns."""

    node_id: int
    front: dict[str, NDArray]
    num_examples: int
    losses: list[float]
    # local-loss SplitFed: the (smashed data, labels) of each of its batches,
    # which the server part trains on once the round's uploads are all in
    uploads: list[tuple[NDArray, NDArray]] = field(default_factory=list)


@dataclass
class InferenceScore:
    """A client's split-inference score on its validation split."""

    correct: int
    count: int


@dataclass
class _Timing:
    """Where a round's time went: opening sessions, and each exchange."""

    session_seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)  # exchanges after the 1st

    def exchange(self, report: ExchangeReport) -> None:
        """After each exchange (the first of a conversation includes set-up)."""
        if report.index > 0:
            self.step_seconds.append(report.seconds)

    def extra(self, exchanges: int) -> dict[str, float]:
        """The round record's extra columns."""
        extra = {"exchanges": float(exchanges)}
        if self.step_seconds:
            extra["step-seconds"] = float(np.median(self.step_seconds))
        if self.session_seconds:
            extra["session-seconds"] = self.session_seconds
        return extra


class SplitLearning:
    """Server side of SplitNN / U-shaped / SplitFed-v1 / SplitFed-v2.

    Parameters
    ----------
    config : SplitConfig
        Mode, learning rate, sync interval, channel settings.
    common : CommonSettings
        Rounds, sampling, timeouts, seed.
    ops : SplitOps
        The task's model operations (injected by the capability's ``serve``).
    run_id : int
        Bound into every frame's associated data.
    endpoint : StreamEndpoint, optional
        The run's streamed-session endpoint; ``None``: every exchange is a Flower
        message.
    """

    def __init__(
        self,
        config: SplitConfig,
        common: CommonSettings,
        ops: SplitOps,
        run_id: int,
        endpoint: StreamEndpoint | None = None,
    ) -> None:
        self.config, self.common, self.ops, self.run_id = config, common, ops, run_id
        self.endpoint = endpoint
        # Identifies this training run to the clients: device state (optimizer
        # buffers, local fronts) of an earlier run on the same node is not reused.
        self.train_id = random.SystemRandom().getrandbits(62)
        self.device_keys = set(ops.device_keys(config.ushaped))
        if config.local_loss:
            self.device_keys |= set(ops.auxiliary_state())
            self._smashed_shape = ops.smashed_shape()
        self.global_state: dict[str, NDArray] = {}
        self._shared: ServerPart | None = None  # split, split-ushaped, splitfed-v2
        self._copies: dict[int, ServerPart] = {}  # splitfed-v1: one per client
        self._feedback: dict[int, ErrorFeedback] = {}
        self._local_fronts = False  # SplitFed between syncs: clients keep their own
        self._timing = _Timing()

    # ----------------------------------------------------------------- loop
    def run(
        self,
        grid: Grid,
        initial_state: dict[str, NDArray],
        recorder: RunRecorder,
    ) -> RunHistory:
        """Run all rounds, recording outputs and a checkpoint after each."""
        checkpoint = recorder.start(self.common.resume)
        self.global_state = (
            dict(checkpoint.arrays) if checkpoint else dict(initial_state)
        )
        if checkpoint is None and self.config.local_loss:  # a fresh auxiliary head
            self.global_state = self.ops.auxiliary_state() | self.global_state
        first = checkpoint.round + 1 if checkpoint else 1
        try:
            if first == 1:
                loss, accuracy = self._evaluate()
                recorder.record_round(
                    RoundRecord(round=0, central_loss=loss, central_accuracy=accuracy),
                    None,
                    {},
                )
            for rnd in range(first, self.common.num_server_rounds + 1):
                recorder.record_round(self._round(grid, rnd), self.global_state, {})
            self._serve_inference(grid, recorder)
        except BaseException:
            recorder.finish(status="failed")
            raise
        return recorder.finish()

    def _round(self, grid: Grid, rnd: int) -> RoundRecord:
        started = time.perf_counter()
        nodes = sample_nodes(
            grid,
            fraction=self.common.fraction_train,
            min_nodes=self.common.min_available_nodes,
            timeout=self.common.round_timeout,
            seed=self.common.seed,
            server_round=rnd,
        )
        log(INFO, "[%s round %d] clients %s", self.config.mode, rnd, nodes)
        traffic = Traffic()
        self._timing = _Timing()
        results: list[ClientRound] = []
        if self.config.sequential:
            for node in nodes:  # each client starts from the previous client's front
                results += self._exchange(
                    grid, rnd, {node: self._converse(node)}, traffic
                )
        else:
            results = self._exchange(
                grid, rnd, {n: self._converse(n) for n in nodes}, traffic
            )
        if self.config.local_loss:
            self._train_on_uploads(results)
        self._aggregate(rnd, results)
        losses = [loss for r in results for loss in r.losses]
        central_loss, central_accuracy = self._evaluate()
        return RoundRecord(
            round=rnd,
            train_loss=float(np.mean(losses)) if losses else None,
            bytes_down=traffic.bytes_down,
            bytes_up=traffic.bytes_up,
            train_replies=len(results),
            failures=len(nodes) - len(results),
            central_loss=central_loss,
            central_accuracy=central_accuracy,
            seconds=time.perf_counter() - started,
            extra=self._timing.extra(traffic.exchanges),
        )

    def _exchange(
        self,
        grid: Grid,
        rnd: int,
        conversations: dict[int, Conversation[SplitOut, SplitIn, Any]],
        traffic: Traffic,
        infer: bool = False,
    ) -> list[Any]:
        """Run conversations in lock-step with fresh per-node keys for this round.

        Over messages, or over one streamed session per node (those that cannot
        reach the endpoint under ``transport = "auto"`` over messages).
        """
        label = "split inference" if infer else f"{self.config.mode} round {rnd}"
        messages: Transport[SplitOut, SplitIn] = MessageTransport(
            grid,
            SealedCodec(
                self.config,
                run_id=self.run_id,
                train_id=self.train_id,
                server_round=rnd,
                feedback=self._feedback,
            ),
            timeout=self.common.round_timeout,
            group_id=str(rnd),
        )
        routes: dict[int, Transport[SplitOut, SplitIn]] = dict.fromkeys(
            conversations, messages
        )
        sessions = None
        if self.endpoint is not None:
            opened = time.perf_counter()
            sessions = open_sessions(
                grid,
                self.endpoint,
                conversations,
                run_id=self.run_id,
                message_type=k.MSG_SESSION,
                content=lambda node: self._session_content(rnd, infer),
                group_id=str(rnd),
                label=label,
            )
            codec = StreamSealedCodec(
                self.config,
                {node: s.keys for node, s in sessions.connected.items()},
                run_id=self.run_id,
                train_id=self.train_id,
                server_round=rnd,
                feedback=self._feedback,
            )
            stream: Transport[SplitOut, SplitIn] = StreamTransport(
                sessions.connected, codec, timeout=self.common.round_timeout
            )
            routes = dict.fromkeys(sessions.connected, stream) | dict.fromkeys(
                sessions.fallback, messages
            )
            self._timing.session_seconds += time.perf_counter() - opened
        exchange: LockstepExchange[SplitOut, SplitIn, Any] = LockstepExchange(
            RoutedTransport(routes),
            label=label,
            drop_on=(ChannelError,),
            on_drop=self._forget,
            after_exchange=self._timing.exchange,
        )
        outcome: Outcome[Any] | None = None
        try:
            outcome = exchange.run(
                {n: c for n, c in conversations.items() if n in routes}
            )
        finally:
            if sessions is not None and self.endpoint is not None:
                sessions.close()
                timeout = self.endpoint.settings.stream_connect_timeout
                finished = () if outcome is None else outcome.results.keys()
                collect_replies(grid, sessions, timeout, label, finished)
                traffic.add(sessions.traffic)
        for node in conversations.keys() - routes.keys():
            self._forget(node, "no session")
        traffic.add(outcome.traffic)
        return list(outcome.results.values())

    def _session_content(self, rnd: int, infer: bool) -> RecordDict:
        """What a session message tells the client besides its ticket."""
        control: dict[str, ConfigRecordValues] = {
            k.MODE: self.config.mode,
            k.SERVER_ROUND: rnd,
            k.RUN_ID: self.run_id,
            k.TRAIN_ID: self.train_id,
            k.CODEC: self.config.channel_codec,
            k.INFER: infer,
            k.ENCRYPTED: self.config.channel_encryption,
        }
        return RecordDict({k.CONTROL: ConfigRecord(control)})

    def _forget(self, node: int, reason: str) -> None:
        self._copies.pop(node, None)  # a SplitFed-v1 copy it half-trained

    # --------------------------------------------------------- conversation
    def _converse(self, node: int) -> Conversation[SplitOut, SplitIn, ClientRound]:
        """The server's half of one client's round."""
        server = self._server_part(node)
        start_front = None if self._local_fronts else self._global_front()
        reply = yield SplitOut({k.START: True, k.WANT_STEP: 0}, front=start_front)
        if self.config.local_loss:
            return self._local_round(node, reply)
        steps = value_of(reply.control, k.NUM_STEPS, int)
        if steps < 1:
            raise DroppedError(f"client reports {steps} steps; expected at least 1")
        expected: dict[str, tuple[int, ...] | None] = {k.ACTIVATIONS: None}
        if not self.config.ushaped:
            expected[k.LABELS] = None
        tensors = reply.tensors(expected)
        losses: list[float] = []
        for step in range(steps):
            activations = tensors[k.ACTIVATIONS]
            if self.config.ushaped:
                middle = server.forward(activations)
                reply = yield SplitOut({k.HEAD_STEP: step}, {k.MIDDLE: middle})
                grad_middle = reply.tensors({k.GRAD_MIDDLE: middle.shape})
                grad = server.backward_step(activations, grad_middle[k.GRAD_MIDDLE])
            else:
                grad, loss = server.loss_step(activations, tensors[k.LABELS])
                losses.append(loss)
            final = step == steps - 1
            control = {
                k.GRAD_STEP: step,
                k.WANT_STEP: -1 if final else step + 1,
                k.FINAL: final,
            }
            reply = yield SplitOut(dict(control), {k.GRAD: grad})
            if not final:
                tensors = reply.tensors(expected)
        digest = reply.tensors({k.FRONT_DIGEST: (32,)})[k.FRONT_DIGEST]
        return self._finish(node, reply, losses, digest)

    def _local_round(self, node: int, reply: SplitIn) -> ClientRound:
        """Local-loss SplitFed: check a client's round of smashed data and keep it.

        The client sent every batch's smashed data and labels at once (stacked,
        with the batch sizes); the server part trains on them (one optimizer step
        per batch) in :meth:`_train_on_uploads` once every client's round is in.
        """
        steps = value_of(reply.control, k.NUM_STEPS, int)
        if steps < 1:
            raise DroppedError(f"client reports {steps} steps; expected at least 1")
        tensors = reply.tensors(
            {
                k.ACTIVATIONS: None,
                k.LABELS: None,
                k.BATCH_SIZES: (steps,),
                k.FRONT_DIGEST: (32,),
            }
        )
        activations, labels = tensors[k.ACTIVATIONS], tensors[k.LABELS]
        sizes = [int(n) for n in tensors[k.BATCH_SIZES]]
        if (
            min(sizes) < 1
            or sum(sizes) != len(labels)
            or len(activations) != len(labels)
        ):
            raise DroppedError(
                f"batch sizes {sizes} do not fit {len(activations)} activations and "
                f"{len(labels)} labels"
            )
        if activations.dtype != np.float32 or (
            activations.shape[1:] != self._smashed_shape
        ):
            raise DroppedError(
                f"smashed data is {activations.dtype} {activations.shape}; expected "
                f"float32 (rows, {', '.join(map(str, self._smashed_shape))})"
            )
        classes = self.ops.num_classes
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DroppedError(
                f"labels are {labels.dtype} {labels.shape}; expected integers (rows,)"
            )
        if len(labels) and not 0 <= labels.min() <= labels.max() < classes:
            raise DroppedError(f"labels outside 0..{classes - 1}")
        bounds = np.cumsum([0, *sizes])
        result = self._finish(node, reply, [], tensors[k.FRONT_DIGEST])
        result.uploads = [(activations[a:b], labels[a:b]) for a, b in pairwise(bounds)]
        return result

    def _train_on_uploads(self, results: list[ClientRound]) -> None:
        """Local-loss SplitFed: one server step per uploaded batch, clients interleaved.

        Round-robin over the clients (client order, then batch order) rather than
        one client's batches after another's: with non-IID clients the latter
        leaves the server part fitted to whichever client came last (measured on
        digits-cnn, 10 clients, Dirichlet 0.5: accuracy swung between 0.33 and 0.66
        over 10 rounds). Runs after the exchange, so a client dropped mid-round
        never trained the server part.
        """
        if not results:
            return
        server = self._server_part(results[0].node_id)  # the shared one
        for i in range(max(len(r.uploads) for r in results)):
            for result in results:
                if i < len(result.uploads):
                    activations, labels = result.uploads[i]
                    result.losses.append(server.loss_step(activations, labels)[1])
        for result in results:
            result.uploads = []

    def _finish(
        self, node: int, reply: SplitIn, losses: list[float], digest: NDArray
    ) -> ClientRound:
        """Check the returned device weights against their sealed digest."""
        front = reply.front()
        if not np.array_equal(weights_digest(front), digest):
            raise ChannelError("device weights do not match their sealed digest")
        if set(front) != self.device_keys:
            raise DroppedError("device weights do not have the device keys")
        metrics = reply.metrics()
        num_examples = value_of(metrics, NUM_EXAMPLES, int)
        if self.config.ushaped and TRAIN_LOSS in metrics:
            losses = [float(value_of(metrics, TRAIN_LOSS, float))]
        if self.config.sequential:  # the next client continues from this front
            self.global_state.update(front)
        return ClientRound(node, front, num_examples, losses)

    # ------------------------------------------------------------ inference
    def _serve_inference(self, grid: Grid, recorder: RunRecorder) -> None:
        """Split inference with the trained model, over the channel.

        The split-inference tutorial's terminal/cloud flow: each client sends the
        smashed data of its validation split; the server answers with predictions
        (U-shaped: the middle's output, the device head predicts), sealed; the
        client scores them against labels it never sent.
        """
        model = self.ops.new_model(self.global_state)
        server = self.ops.server_side(model, self.config.ushaped)
        nodes = sorted(grid.get_node_ids())  # whoever is still connected
        front = self._global_front()
        key = k.MIDDLE if self.config.ushaped else k.PREDICTIONS

        def converse(node: int) -> Conversation[SplitOut, SplitIn, InferenceScore]:
            reply = yield SplitOut({k.START: True, k.INFER: True}, front=front)
            activations = reply.tensors({k.ACTIVATIONS: None})[k.ACTIVATIONS]
            result = server.infer(activations, predictions=not self.config.ushaped)
            reply = yield SplitOut({k.INFER: True}, {key: result})
            score = reply.tensors({k.CORRECT: (1,), k.COUNT: (1,)})
            return InferenceScore(int(score[k.CORRECT][0]), int(score[k.COUNT][0]))

        started = time.perf_counter()
        traffic = Traffic()
        scores: list[InferenceScore] = self._exchange(
            grid, 0, {n: converse(n) for n in nodes}, traffic, infer=True
        )
        total = sum(s.count for s in scores)
        if not total or recorder.history.last is None:
            return
        accuracy = sum(s.correct for s in scores) / total
        log(
            INFO,
            "split inference over the channel: accuracy %.4f on %d examples of %d "
            "clients' validation splits (%d B down, %d B up, %.1f s)",
            accuracy,
            total,
            len(scores),
            traffic.bytes_down,
            traffic.bytes_up,
            time.perf_counter() - started,
        )
        recorder.history.last.extra.update(
            {
                "split-inference-accuracy": accuracy,
                "split-inference-examples": float(total),
                "split-inference-bytes": float(traffic.total),
            }
        )

    def _global_front(self) -> dict[str, NDArray]:
        """The device part(s) of the global model."""
        return {n: v for n, v in self.global_state.items() if n in self.device_keys}

    def _server_part(self, node: int) -> ServerPart:
        if self.config.mode == "splitfed-v1":
            if node not in self._copies:
                self._copies[node] = self.ops.server_side(
                    self.ops.new_model(self.global_state), self.config.ushaped
                )
            return self._copies[node]
        if self._shared is None:
            model = self.ops.new_model(self.global_state)
            self._shared = self.ops.server_side(model, self.config.ushaped)
        return self._shared

    # -------------------------------------------------------- aggregation
    def _aggregate(self, rnd: int, results: list[ClientRound]) -> None:
        """Update the global state: server part(s) and (SplitFed) averaged fronts."""
        if not results:
            log(
                WARNING, "round %d: no client finished; keeping the previous model", rnd
            )
            return
        if self.config.mode == "splitfed-v1":
            kept = [r for r in results if r.node_id in self._copies]
            server_state = weighted_mean(
                [self._copies[r.node_id].full_state() for r in kept],
                [r.num_examples for r in kept],
            )
        else:
            assert self._shared is not None
            server_state = self._shared.full_state()
        self.global_state.update(
            {k_: v for k_, v in server_state.items() if k_ not in self.device_keys}
        )
        if not self.config.sequential:
            self.global_state.update(
                weighted_mean(
                    [r.front for r in results], [r.num_examples for r in results]
                )
            )
        sync = rnd % self.config.sync_interval == 0
        self._local_fronts = not self.config.sequential and not sync
        if self.config.mode == "splitfed-v1" and sync:
            for copy in self._copies.values():  # every copy restarts from the average
                copy.load_full_state(self.global_state)

    def _evaluate(self) -> tuple[float, float]:
        metrics = self.ops.evaluate(self.global_state)
        return metrics["loss"], metrics["accuracy"]
