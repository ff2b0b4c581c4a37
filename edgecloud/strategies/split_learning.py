"""SplitNN, U-shaped split learning and SplitFed v1/v2 over Flower messages.

Vepakomma et al. 2018 (SplitNN, U-shaped); Thapa et al. 2022, arXiv:2004.12088
(SplitFed). The ServerApp drives the round itself (``Strategy.start()`` has one
exchange per round; split learning needs one per optimizer step).

What the ClientApp must do (``edgecloud.client_app.split_step``), per message of
type :data:`~edgecloud.protocol.MSG_SPLIT_STEP`:

1. On ``start``: agree on keys (``server-pub`` -> ``client-pub``), load the device
   weights sent in ``front`` (or keep its own between SplitFed syncs), restore its
   optimizer from ``context.state`` and report ``num-steps`` of the round.
2. Apply ``grad`` (gradient of the activations of ``grad-step``) by recomputing the
   forward pass of that step, then take an optimizer step.
3. U-shaped: run its head on ``middle`` (step ``head-step``), reply ``grad_middle``.
4. Send ``activations`` (and ``labels``, except U-shaped) of ``want-step``.
5. On ``final``: reply the trained device weights and ``num-examples``.

All tensors travel in one sealed :mod:`edgecloud.channel` frame per message.
"""

from __future__ import annotations

import random
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid

from edgecloud.channel import (
    SERVER_TO_CLIENT,
    ChannelError,
    ErrorFeedback,
    FrameContext,
    Handshake,
    SecureChannel,
    weights_digest,
)
from edgecloud.protocol import (
    FRONT_DIGEST,
    METRICS,
    MSG_SPLIT_STEP,
    NUM_EXAMPLES,
    SPLIT,
    SPLIT_FRONT,
    TRAIN_LOSS,
)
from edgecloud.results import RoundRecord, RunHistory, RunRecorder
from edgecloud.strategies.round_tracking import message_bytes

NDArray = npt.NDArray[Any]
SPLIT_NAMES = ("split", "split-ushaped", "splitfed-v1", "splitfed-v2")


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
    """What the strategy needs from a task (see ``tasks.split_steps.TaskSplitOps``)."""

    def new_model(self, state: dict[str, NDArray] | None = None) -> torch.nn.Module:
        """A full model (optionally loaded)."""

    def device_keys(self, ushaped: bool) -> list[str]:
        """Full-state keys of the device part(s)."""

    def server_side(self, model: Any, ushaped: bool) -> ServerPart:
        """The cloud part of ``model`` with a fresh optimizer."""

    def evaluate(self, state: dict[str, NDArray]) -> dict[str, float]:
        """Loss and accuracy of the assembled model."""


@dataclass(frozen=True)
class SplitParams:
    """Settings of a split-learning run (from the run config)."""

    mode: str
    num_rounds: int
    fraction_train: float
    min_available_nodes: int
    round_timeout: float
    seed: int
    encryption: bool = True
    codec: str = "fp32"
    error_feedback: bool = False
    sync_interval: int = 1

    def __post_init__(self) -> None:
        if self.mode not in SPLIT_NAMES:
            raise ValueError(f"split mode {self.mode!r}; expected one of {SPLIT_NAMES}")
        if self.sync_interval < 1:
            raise ValueError(f"sync_interval is {self.sync_interval}; expected >= 1")

    @property
    def ushaped(self) -> bool:
        """Labels and loss stay on the device."""
        return self.mode == "split-ushaped"

    @property
    def sequential(self) -> bool:
        """SplitNN variants train clients one after another."""
        return self.mode in ("split", "split-ushaped")


@dataclass
class _Outgoing:
    config: dict[str, Any]
    tensors: dict[str, NDArray] = field(default_factory=dict)
    front: dict[str, NDArray] | None = None


@dataclass
class _ClientResult:
    node_id: int
    front: dict[str, NDArray]
    num_examples: int
    metrics: dict[str, Any]
    losses: list[float]


Conversation = Generator[_Outgoing, Message, _ClientResult]


class SplitLearning:
    """Server side of SplitNN / U-shaped / SplitFed-v1 / SplitFed-v2.

    Parameters
    ----------
    params : SplitParams
        Mode, rounds, sampling, channel settings.
    ops : SplitOps
        The task's model operations (injected by the ServerApp).
    run_id : int
        Bound into every frame's associated data.
    """

    def __init__(self, params: SplitParams, ops: SplitOps, run_id: int) -> None:
        self.params, self.ops, self.run_id = params, ops, run_id
        # Identifies this training run to the clients: device state (optimizer
        # buffers, local fronts) of an earlier run on the same node is not reused.
        self.train_id = random.SystemRandom().getrandbits(62)
        self.device_keys = set(ops.device_keys(params.ushaped))
        self.global_state: dict[str, NDArray] = {}
        self._shared: ServerPart | None = None  # split, split-ushaped, splitfed-v2
        self._copies: dict[int, ServerPart] = {}  # splitfed-v1: one per client
        self._feedback: dict[int, ErrorFeedback] = {}
        self._local_fronts = False  # SplitFed between syncs: clients keep their own
        self._sessions: dict[int, SecureChannel] = {}
        self._round_index = self._exchange_index = 0

    # ----------------------------------------------------------------- loop
    def run(
        self,
        grid: Grid,
        initial_state: dict[str, NDArray],
        recorder: RunRecorder,
        resume: bool,
    ) -> RunHistory:
        """Run all rounds, recording outputs and a checkpoint after each."""
        checkpoint = recorder.start(resume)
        self.global_state = (
            dict(checkpoint.arrays) if checkpoint else dict(initial_state)
        )
        first = checkpoint.round + 1 if checkpoint else 1
        if first == 1:
            loss, accuracy = self._evaluate()
            recorder.record_round(
                RoundRecord(round=0, central_loss=loss, central_accuracy=accuracy),
                None,
                {},
            )
        try:
            for rnd in range(first, self.params.num_rounds + 1):
                recorder.record_round(self._round(grid, rnd), self.global_state, {})
            self._serve_inference(grid, recorder)
        except BaseException:
            recorder.finish(status="failed")
            raise
        return recorder.finish()

    def _round(self, grid: Grid, rnd: int) -> RoundRecord:
        started = time.perf_counter()
        nodes = self._sample(grid, rnd)
        log(INFO, "[%s round %d] clients %s", self.params.mode, rnd, nodes)
        traffic = [0, 0, 0]  # bytes down, bytes up, exchanges
        results: list[_ClientResult] = []
        if self.params.sequential:
            for node in nodes:  # each client starts from the previous client's front
                results += self._exchange(
                    grid, rnd, {node: self._converse(node, rnd)}, traffic
                )
        else:
            results = self._exchange(
                grid, rnd, {n: self._converse(n, rnd) for n in nodes}, traffic
            )
        self._aggregate(rnd, results)
        losses = [loss for r in results for loss in r.losses]
        central_loss, central_accuracy = self._evaluate()
        record = RoundRecord(
            round=rnd,
            train_loss=float(np.mean(losses)) if losses else None,
            bytes_down=traffic[0],
            bytes_up=traffic[1],
            train_replies=len(results),
            failures=len(nodes) - len(results),
            central_loss=central_loss,
            central_accuracy=central_accuracy,
        )
        record.seconds = time.perf_counter() - started
        record.extra = {"exchanges": float(traffic[2])}
        return record

    def _sample(self, grid: Grid, rnd: int) -> list[int]:
        deadline = time.monotonic() + self.params.round_timeout
        while (
            len(nodes := sorted(grid.get_node_ids())) < self.params.min_available_nodes
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(nodes)} SuperNodes connected")
            time.sleep(1.0)
        count = max(1, int(len(nodes) * self.params.fraction_train))
        return random.Random(self.params.seed * 100_003 + rnd).sample(nodes, count)

    def _exchange(
        self,
        grid: Grid,
        rnd: int,
        conversations: dict[int, Conversation],
        traffic: list[int],
    ) -> list[_ClientResult]:
        """Advance conversations in lock-step: one send_and_receive per exchange.

        Exchange 0 carries a fresh X25519 public key per client (keys per round and
        node); every later message carries one sealed frame.
        """
        handshakes = {node: Handshake() for node in conversations}
        self._sessions = {
            node: SecureChannel(None, send_direction=SERVER_TO_CLIENT)
            for node in conversations
        }
        self._round_index, self._exchange_index = rnd, 0
        pending = {node: next(conv) for node, conv in conversations.items()}
        results: list[_ClientResult] = []
        while pending:
            for node, out in pending.items():
                if self._exchange_index == 0 and self.params.encryption:
                    out.config["server-pub"] = handshakes[node].public_bytes
            messages = [self._message(node, out) for node, out in pending.items()]
            traffic[0] += sum(message_bytes(m) for m in messages)
            replies = {
                r.metadata.src_node_id: r
                for r in grid.send_and_receive(
                    messages, timeout=self.params.round_timeout
                )
            }
            following: dict[int, _Outgoing] = {}
            for node in pending:
                reply = replies.get(node)
                try:
                    if reply is None or reply.has_error():
                        raise _DroppedError(
                            "no reply" if reply is None else str(reply.error.reason)
                        )
                    traffic[1] += message_bytes(reply)
                    if self._exchange_index == 0 and self.params.encryption:
                        client_pub = reply.content.config_records[SPLIT]["client-pub"]
                        if not isinstance(client_pub, bytes):
                            raise ChannelError("start reply carries no client-pub")
                        keys = handshakes[node].derive(
                            client_pub, is_server=True, run_id=self.run_id, node_id=node
                        )
                        self._sessions[node] = SecureChannel(
                            keys, send_direction=SERVER_TO_CLIENT
                        )
                    following[node] = conversations[node].send(reply)
                except StopIteration as done:
                    results.append(done.value)
                except (
                    _DroppedError,
                    ChannelError,
                    KeyError,
                    ValueError,
                    TypeError,
                ) as err:
                    lines = str(err).strip().splitlines() or [type(err).__name__]
                    log(
                        WARNING,
                        "round %d: dropping node %d at exchange %d: %s",
                        rnd,
                        node,
                        self._exchange_index,
                        lines[-1][:300],
                    )
                    self._copies.pop(node, None)  # a SplitFed-v1 copy it half-trained
            pending = following
            self._exchange_index += 1
            traffic[2] += 1
        return results

    def _context(self, node: int) -> FrameContext:
        return FrameContext(
            self.run_id, node, MSG_SPLIT_STEP, self._round_index, self._exchange_index
        )

    def _message(self, node: int, out: _Outgoing) -> Message:
        config = {
            **out.config,
            "mode": self.params.mode,
            "server-round": self._round_index,
            "exchange": self._exchange_index,
            "run-id": self.run_id,
            "train-id": self.train_id,
            "codec": self.params.codec,
        }
        if self._exchange_index > 0:  # keys exist from the first reply on
            feedback = (
                self._feedback.setdefault(node, ErrorFeedback())
                if self.params.error_feedback
                else None
            )
            config["frame"] = self._sessions[node].seal(
                out.tensors, self._context(node), self.params.codec, feedback
            )
        content = RecordDict({SPLIT: ConfigRecord(config)})
        if out.front is not None:
            content[SPLIT_FRONT] = ArrayRecord(
                {k: Array(np.ascontiguousarray(v)) for k, v in out.front.items()}
            )
        return Message(
            content,
            dst_node_id=node,
            message_type=MSG_SPLIT_STEP,
            group_id=str(self._round_index),
        )

    def _open(
        self, node: int, reply: Message, expected: Mapping[str, tuple[int, ...] | None]
    ) -> dict[str, NDArray]:
        frame = reply.content.config_records[SPLIT].get("frame")
        if not isinstance(frame, bytes):
            raise ChannelError("reply carries no frame")
        return self._sessions[node].open(frame, self._context(node), expected)

    # --------------------------------------------------------- conversation
    def _converse(self, node: int, rnd: int) -> Conversation:
        """The server's half of one client's round, as a generator of messages."""
        server = self._server_part(node)
        start_front = (
            None
            if self._local_fronts
            else {k: v for k, v in self.global_state.items() if k in self.device_keys}
        )
        reply = yield _Outgoing({"start": True, "want-step": 0}, front=start_front)
        steps = reply.content.config_records[SPLIT].get("num-steps")
        if not isinstance(steps, int) or steps < 1:
            raise _DroppedError(f"client reports {steps!r} steps")
        expected: dict[str, tuple[int, ...] | None] = {"activations": None}
        if not self.params.ushaped:
            expected["labels"] = None
        tensors = self._open(node, reply, expected)
        losses: list[float] = []
        for step in range(steps):
            activations = tensors["activations"]
            if self.params.ushaped:
                middle = server.forward(activations)
                reply = yield _Outgoing({"head-step": step}, {"middle": middle})
                grad_middle = self._open(node, reply, {"grad_middle": middle.shape})
                grad = server.backward_step(activations, grad_middle["grad_middle"])
            else:
                grad, loss = server.loss_step(activations, tensors["labels"])
                losses.append(loss)
            final = step == steps - 1
            config = {
                "grad-step": step,
                "want-step": -1 if final else step + 1,
                "final": final,
            }
            reply = yield _Outgoing(config, {"grad": grad})
            if not final:
                tensors = self._open(node, reply, expected)
        return self._finish(node, reply, losses)

    def _finish(self, node: int, reply: Message, losses: list[float]) -> _ClientResult:
        """Check the returned device weights against their sealed digest."""
        digest = self._open(node, reply, {FRONT_DIGEST: (32,)})[FRONT_DIGEST]
        front = {
            k: a.numpy() for k, a in reply.content.array_records[SPLIT_FRONT].items()
        }
        if not np.array_equal(weights_digest(front), digest):
            raise ChannelError("device weights do not match their sealed digest")
        if set(front) != self.device_keys:
            raise _DroppedError("device weights do not have the device keys")
        metrics = dict(reply.content.metric_records[METRICS])
        if self.params.ushaped and TRAIN_LOSS in metrics:
            losses = [float(metrics[TRAIN_LOSS])]  # type: ignore[arg-type]
        if self.params.sequential:  # the next client continues from this front
            self.global_state.update(front)
        return _ClientResult(node, front, int(metrics[NUM_EXAMPLES]), metrics, losses)  # type: ignore[arg-type]

    # ------------------------------------------------------------ inference
    def _serve_inference(self, grid: Grid, recorder: RunRecorder) -> None:
        """Seed 000's terminal/cloud flow with the trained model, over the channel.

        Each client sends the smashed data of its validation split; the server
        answers with predictions (U-shaped: the middle's output, the device head
        predicts), sealed; the client scores them against labels it never sent.
        """
        model = self.ops.new_model(self.global_state)
        server = self.ops.server_side(model, self.params.ushaped)
        nodes = sorted(grid.get_node_ids())
        front = {k: v for k, v in self.global_state.items() if k in self.device_keys}
        traffic = [0, 0, 0]  # bytes down, bytes up, exchanges

        def converse(node: int) -> Conversation:
            reply = yield _Outgoing({"start": True, "infer": True}, front=front)
            activations = self._open(node, reply, {"activations": None})["activations"]
            key = "middle" if self.params.ushaped else "predictions"
            result = server.infer(activations, predictions=not self.params.ushaped)
            reply = yield _Outgoing({"infer": True}, {key: result})
            score = self._open(node, reply, {"correct": (1,), "count": (1,)})
            count = int(score["count"][0])
            return _ClientResult(
                node, {}, count, {"correct": int(score["correct"][0])}, []
            )

        started = time.perf_counter()
        scores = self._exchange(grid, 0, {n: converse(n) for n in nodes}, traffic)
        total = sum(s.num_examples for s in scores)
        if not total or recorder.history.last is None:
            return
        accuracy = sum(int(s.metrics["correct"]) for s in scores) / total
        log(
            INFO,
            "split inference over the channel: accuracy %.4f on %d examples of %d "
            "clients' validation splits (%d B down, %d B up, %.1f s)",
            accuracy,
            total,
            len(scores),
            traffic[0],
            traffic[1],
            time.perf_counter() - started,
        )
        recorder.history.last.extra.update(
            {
                "split-inference-accuracy": accuracy,
                "split-inference-examples": float(total),
                "split-inference-bytes": float(traffic[0] + traffic[1]),
            }
        )

    def _server_part(self, node: int) -> ServerPart:
        if self.params.mode == "splitfed-v1":
            if node not in self._copies:
                self._copies[node] = self.ops.server_side(
                    self.ops.new_model(self.global_state), self.params.ushaped
                )
            return self._copies[node]
        if self._shared is None:
            model = self.ops.new_model(self.global_state)
            self._shared = self.ops.server_side(model, self.params.ushaped)
        return self._shared

    # -------------------------------------------------------- aggregation
    def _aggregate(self, rnd: int, results: list[_ClientResult]) -> None:
        """Update the global state: server part(s) and (SplitFed) averaged fronts."""
        if not results:
            log(
                WARNING, "round %d: no client finished; keeping the previous model", rnd
            )
            return
        weights = np.array([r.num_examples for r in results], dtype=np.float64)
        weights /= weights.sum()
        if self.params.mode == "splitfed-v1":
            kept = [r for r in results if r.node_id in self._copies]
            states = [self._copies[r.node_id].full_state() for r in kept]
            share = np.array([r.num_examples for r in kept], dtype=np.float64)
            server_state = _weighted_mean(states, share / share.sum())
        else:
            assert self._shared is not None
            server_state = self._shared.full_state()
        self.global_state.update(
            {k: v for k, v in server_state.items() if k not in self.device_keys}
        )
        if not self.params.sequential:
            self.global_state.update(
                _weighted_mean([r.front for r in results], weights)
            )
        sync = rnd % self.params.sync_interval == 0
        self._local_fronts = not self.params.sequential and not sync
        if self.params.mode == "splitfed-v1" and sync:
            for copy in self._copies.values():  # every copy restarts from the average
                copy.load_full_state(self.global_state)

    def _evaluate(self) -> tuple[float, float]:
        metrics = self.ops.evaluate(self.global_state)
        return metrics["loss"], metrics["accuracy"]


class _DroppedError(Exception):
    """A client left the conversation (error reply, timeout, bad content)."""


def _weighted_mean(
    states: list[dict[str, NDArray]], weights: NDArray
) -> dict[str, NDArray]:
    keys = states[0].keys()
    out = {}
    for key in keys:
        stacked = np.stack([s[key] for s in states])
        if np.issubdtype(stacked.dtype, np.floating):
            out[key] = np.tensordot(weights, stacked, axes=1).astype(stacked.dtype)
        else:  # counters (e.g. BatchNorm's num_batches_tracked): take the largest
            out[key] = stacked.max(axis=0)
    return out
