"""Per-round measurements around any strategy: bytes, time, failures, partitions."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import cast

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from edgecloud.capabilities.fl.delegating import DelegatingStrategy
from edgecloud.workflow.keys import LABEL_HISTOGRAM, METRICS, NUM_EXAMPLES, PARTITION_ID
from edgecloud.workflow.traffic import Traffic

# Per-client facts, not quantities to average.
_NOT_AVERAGED = frozenset({PARTITION_ID, LABEL_HISTOGRAM})
_REASON_CHARS = 300


@dataclass
class RoundStats:
    """What :class:`RoundTracker` measured in one round."""

    started: float = field(default_factory=time.perf_counter)
    traffic: Traffic = field(default_factory=Traffic)
    train_replies: int = 0
    failures: int = 0
    train_metrics: dict[str, float] = field(default_factory=dict)
    evaluate_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Wall time since the round was configured."""
        return time.perf_counter() - self.started


def aggregate_scalar_metrics(
    records: list[RecordDict], weight_key: str
) -> MetricRecord:
    """Weighted mean of scalar metrics, skipping per-client facts (partition id...)."""
    total = sum(
        float(cast(float, r.metric_records[METRICS][weight_key])) for r in records
    )
    sums: dict[str, float] = {}
    for record in records:
        metrics = record.metric_records[METRICS]
        weight = float(cast(float, metrics[weight_key])) / total if total else 0.0
        for key, value in metrics.items():
            if key in _NOT_AVERAGED or key == weight_key or isinstance(value, list):
                continue
            sums[key] = sums.get(key, 0.0) + float(value) * weight
    return MetricRecord(sums)  # type: ignore[arg-type]


class RoundTracker(DelegatingStrategy):
    """Measure every round of ``inner`` and shift round numbers after a resume.

    Parameters
    ----------
    inner : Strategy
        The strategy doing the work (possibly wrapped in DP / quantization).
    round_offset : int
        Rounds already completed before this process started (resume): Flower's
        ``start()`` counts from 1, the inner strategy and the clients see
        ``round + round_offset``.
    """

    def __init__(self, inner: Strategy, round_offset: int = 0) -> None:
        super().__init__(inner)
        self.round_offset = round_offset
        self.partitions: dict[int, dict[str, object]] = {}
        self._stats: dict[int, RoundStats] = {}
        self._sent_dtypes: dict[str, str] = {}
        self._partitions_logged = False
        self._cast_logged = False
        # The messages of the current phase: an error reply names the message it
        # answers, while its src_node_id can be the SuperLink's own id.
        self._sent: list[Message] = []

    def finish_round(self, server_round: int) -> RoundStats:
        """Hand over (and forget) the measurements of round ``server_round``."""
        return self._stats.pop(server_round, RoundStats())

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Configure through ``inner`` and count the bytes sent down."""
        rnd = server_round + self.round_offset
        stats = self._stats.setdefault(rnd, RoundStats())
        self._sent_dtypes = {key: array.dtype for key, array in arrays.items()}
        messages = list(super().configure_train(rnd, arrays, config, grid))
        stats.traffic.sent(messages)
        stats.traffic.exchanges += 1
        self._sent = messages  # the grid sets their ids when it sends them
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Count bytes and failures, note partitions, then aggregate via ``inner``."""
        rnd = server_round + self.round_offset
        stats = self._stats.setdefault(rnd, RoundStats())
        replies = self._account(rnd, _in_partition_order(replies), stats, "train")
        stats.train_replies = sum(1 for r in replies if not r.has_error())
        self._note_partitions(replies)
        arrays, metrics = super().aggregate_train(rnd, replies)
        if arrays is None and replies:
            log(
                WARNING,
                "round %s: no aggregate produced; keeping the previous model",
                rnd,
            )
        if arrays is not None:
            arrays = self._keep_dtypes(arrays)
        stats.train_metrics = _scalars(metrics)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Configure through ``inner`` and count the bytes sent down."""
        rnd = server_round + self.round_offset
        stats = self._stats.setdefault(rnd, RoundStats())
        messages = list(super().configure_evaluate(rnd, arrays, config, grid))
        stats.traffic.sent(messages)
        stats.traffic.exchanges += 1
        self._sent = messages
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Count bytes and failures, then aggregate through ``inner``."""
        rnd = server_round + self.round_offset
        stats = self._stats.setdefault(rnd, RoundStats())
        replies = self._account(rnd, _in_partition_order(replies), stats, "evaluate")
        metrics = super().aggregate_evaluate(rnd, replies)
        stats.evaluate_metrics = _scalars(metrics)
        return metrics

    # ------------------------------------------------------------------------
    def _keep_dtypes(self, arrays: ArrayRecord) -> ArrayRecord:
        """Cast aggregated arrays back to the dtypes that were sent.

        Flower 1.41's FedAdam/FedYogi/FedAdagrad multiply by a NumPy float64 scalar
        and return float64 weights: without this the global model doubles in size on
        the wire from round 2 on.
        """
        changed = [
            k for k, a in arrays.items() if self._sent_dtypes.get(k, a.dtype) != a.dtype
        ]
        if not changed:
            return arrays
        if not self._cast_logged:
            self._cast_logged = True
            log(
                INFO,
                "aggregated arrays came back as %s; casting to the model's %s",
                arrays[changed[0]].dtype,
                self._sent_dtypes[changed[0]],
            )
        return ArrayRecord(
            {
                k: Array(a.numpy().astype(self._sent_dtypes[k])) if k in changed else a
                for k, a in arrays.items()
            }
        )

    def _account(
        self, rnd: int, replies: list[Message], stats: RoundStats, phase: str
    ) -> list[Message]:
        sent_to = {m.metadata.message_id: m.metadata.dst_node_id for m in self._sent}
        for reply in replies:
            if reply.has_error():
                stats.failures += 1
                reason = (reply.error.reason or "").strip().splitlines()
                node = sent_to.get(
                    reply.metadata.reply_to_message_id, reply.metadata.src_node_id
                )
                log(
                    WARNING,
                    "round %s: %s failed on node %s (code %s): %s",
                    rnd,
                    phase,
                    node,
                    reply.error.code,
                    (reason[-1] if reason else "")[:_REASON_CHARS],
                )
        stats.traffic.received(replies)
        return replies

    def _note_partitions(self, replies: list[Message]) -> None:
        for reply in replies:
            if reply.has_error() or METRICS not in reply.content:
                continue
            metrics = reply.content.metric_records[METRICS]
            if PARTITION_ID not in metrics:
                continue
            pid = int(cast(int, metrics[PARTITION_ID]))
            self.partitions[pid] = {
                "partition-id": pid,
                "node-id": reply.metadata.src_node_id,
                "num-train-examples": metrics.get(NUM_EXAMPLES),
                "label-histogram": list(
                    cast(list[int], metrics.get(LABEL_HISTOGRAM, []))
                ),
            }
        if self.partitions and not self._partitions_logged:
            self._partitions_logged = True
            log(INFO, "partition summary (train examples | label histogram):")
            for pid in sorted(self.partitions):
                part = self.partitions[pid]
                log(
                    INFO,
                    "  partition %3d (node %s): %5s | %s",
                    pid,
                    part["node-id"],
                    part["num-train-examples"],
                    part["label-histogram"],
                )


def _in_partition_order(replies: Iterable[Message]) -> list[Message]:
    """Replies sorted by partition id (then node id), error replies last.

    Replies arrive in completion order, which varies from run to run; Flower's
    aggregation sums them in the order given, and floating-point sums depend on
    the order. A fixed order makes a run reproducible for its seed.
    """

    def key(reply: Message) -> tuple[int, int, int]:
        if reply.has_error():
            return (1, 0, reply.metadata.src_node_id)
        metrics = reply.content.metric_records.get(METRICS)
        partition = metrics.get(PARTITION_ID, -1) if metrics is not None else -1
        return (0, int(cast(int, partition)), reply.metadata.src_node_id)

    return sorted(replies, key=key)


def _scalars(metrics: MetricRecord | None) -> dict[str, float]:
    if metrics is None:
        return {}
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
