"""InFi's server side: FedAvg of skip filters (or local-only rounds), then the report.

``mode="federated"``: Flower's :class:`~flwr.serverapp.strategy.FedAvg` averages
the filter weights over ``num-server-rounds``, weighted by each node's training
frames; :class:`FilterFedAvg` only retypes its messages, drops malformed replies
before Flower's aggregation sees them, and keeps each round's numbers.
``mode="local"``: the same rounds and epochs, but every node trains its own
filter and no weights cross the network (the baseline). After the last round
every node picks its threshold for ``target-accuracy`` and reports its test
part; the server logs each node and the example-weighted mean, records every
round, and (federated) saves the global filter into ``output-dir``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import TYPE_CHECKING

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
)
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from edgecloud.capabilities.infi import keys as k
from edgecloud.capabilities.infi.config import InfiConfig
from edgecloud.exceptions import InconsistentRepliesError
from edgecloud.results import RoundRecord, RunRecorder
from edgecloud.settings import RunSettings
from edgecloud.workflow.exchange import DroppedError
from edgecloud.workflow.keys import (
    ARRAYS,
    METRICS,
    NUM_EXAMPLES,
    PARTITION_ID,
    TRAIN_LOSS,
)
from edgecloud.workflow.nodes import wait_for_nodes
from edgecloud.workflow.records import reply_arrays, reply_metrics, value_of
from edgecloud.workflow.run_setup import make_recorder
from edgecloud.workflow.traffic import Traffic

if TYPE_CHECKING:
    from flwr.serverapp.strategy import Result

# Per-node facts in an evaluation reply that are not averaged.
_NODE_FACTS = (PARTITION_ID, k.NUM_CAMERAS)
# Checks a reply's content; raises DroppedError when it is malformed.
_Check = Callable[[Message], None]


@dataclass
class RoundStats:
    """One round as the records need it: aggregates, replies, failures, bytes."""

    train_metrics: dict[str, float] = field(default_factory=dict)
    train_replies: int = 0
    failures: int = 0
    traffic: Traffic = field(default_factory=Traffic)
    # after the last round: example-weighted means and each node's report
    evaluation: dict[str, float] | None = None
    node_reports: list[dict[str, float]] = field(default_factory=list)


class FilterFedAvg(FedAvg):
    """FedAvg (McMahan et al., 2017) of InFi skip filters (InFi, thesis ch. 3).

    ``average=True`` is unchanged FedAvg, weighted by ``num-examples``, except that
    messages are typed ``MSG_TRAIN`` / ``MSG_EVALUATE`` (the FL capability's
    default handlers must not get them), a malformed reply drops its node instead
    of aborting the run, and evaluation runs only after round ``num_rounds``.
    ``average=False`` is the local-only baseline: no weights are sent or averaged.

    The client **must**: for a train message, fit the filter in ``arrays`` (or,
    with ``own-filter`` in the config, its own filter of this ``session``) on its
    training frames and reply with one MetricRecord holding ``num-examples`` (its
    training frames) and ``train-loss``, plus (federated) exactly one ArrayRecord
    of the trained weights; for an evaluate message, choose the skip threshold on
    its validation frames and reply with one MetricRecord holding
    ``num-examples`` (test frames), ``partition-id`` and every key of
    ``EVALUATION_KEYS`` (shares in ``[0, 1]``).
    """

    def __init__(
        self,
        *,
        average: bool,
        num_rounds: int,
        reference: ArrayRecord,
        min_available_nodes: int,
        fraction_train: float,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=1.0,  # every node reports on its own test frames
            min_available_nodes=min_available_nodes,
            min_train_nodes=1,
            min_evaluate_nodes=1,
        )
        self.average = average
        self.num_rounds = num_rounds
        self.reference = reference  # the shapes a trained filter must have
        self.round_stats: dict[int, RoundStats] = {}

    # ---------------------------------------------------------------- train
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's train messages, retyped; local mode sends no weights."""
        sent = arrays if self.average else ArrayRecord()
        messages = self._retyped(
            super().configure_train(server_round, sent, config, grid), k.MSG_TRAIN
        )
        stats = self.round_stats[server_round] = RoundStats()
        stats.traffic.sent(messages)
        stats.failures = len(messages)  # until a usable reply arrives
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """FedAvg's aggregate over the usable replies (local mode: metrics only)."""
        replies = list(replies)
        stats = self.round_stats[server_round]
        stats.traffic.received(replies)
        usable = self._usable(server_round, replies, self._check_train)
        if not usable:
            raise InconsistentRepliesError(
                f"round {server_round}: no usable train reply ({len(replies)} "
                f"received); expected at least one node to train"
            )
        stats.train_replies = len(usable)
        stats.failures -= len(usable)
        if self.average:
            arrays, metrics = super().aggregate_train(server_round, usable)
        else:
            arrays = None  # nothing to average: each node keeps its own filter
            metrics = self.train_metrics_aggr_fn(
                [r.content for r in usable], self.weighted_by_key
            )
        stats.train_metrics = _floats(metrics or {})
        return arrays, metrics

    # ---------------------------------------------------------------- evaluate
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """After the last round only: every node scores the filter (or its own)."""
        if server_round != self.num_rounds:
            return []
        sent = arrays if self.average else ArrayRecord()
        messages = self._retyped(
            super().configure_evaluate(server_round, sent, config, grid),
            k.MSG_EVALUATE,
        )
        self.round_stats[server_round].traffic.sent(messages)
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Example-weighted means of the nodes' reports (Flower's aggregation)."""
        replies = list(replies)
        if server_round != self.num_rounds:
            return None
        stats = self.round_stats[server_round]
        stats.traffic.received(replies)
        usable = self._usable(server_round, replies, _check_evaluation)
        if not usable:
            raise InconsistentRepliesError(
                f"round {server_round}: no node reported its filter ({len(replies)} "
                "replies received); expected at least one"
            )
        metrics = super().aggregate_evaluate(server_round, usable)
        assert metrics is not None  # usable is not empty
        mean = {key: v for key, v in _floats(metrics).items() if key not in _NODE_FACTS}
        stats.evaluation = mean
        stats.node_reports = [_floats(reply_metrics(r, METRICS)) for r in usable]
        return MetricRecord(mean)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- replies
    @staticmethod
    def _retyped(messages: Iterable[Message], message_type: str) -> list[Message]:
        out = list(messages)
        for message in out:
            message.metadata.message_type = message_type
        return out

    def _usable(
        self,
        server_round: int,
        replies: list[Message],
        check: _Check,
    ) -> list[Message]:
        """Replies without error whose content parses; the others drop their node."""
        usable = []
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                log(
                    WARNING,
                    "infi round %d: node %s failed: %s",
                    server_round,
                    node,
                    reply.error.reason,
                )
                continue
            try:
                check(reply)
            except DroppedError as err:
                log(
                    WARNING,
                    "infi round %d: node %s dropped: %s",
                    server_round,
                    node,
                    err,
                )
                continue
            usable.append(reply)
        return usable

    def _check_train(self, reply: Message) -> None:
        """Exactly FedAvg's records, weights shaped like the global filter."""
        metrics = _only_metrics(reply)
        _positive_count(metrics)
        loss = value_of(metrics, TRAIN_LOSS, float)
        if not math.isfinite(loss):
            raise DroppedError(f"reply has '{TRAIN_LOSS}' = {loss}")
        if self.average:
            if len(reply.content.array_records) != 1:
                raise DroppedError(
                    f"reply has {len(reply.content.array_records)} array records; "
                    f"expected one ('{ARRAYS}')"
                )
            from edgecloud.capabilities.infi.filter_records import check_like

            check_like(reply_arrays(reply, ARRAYS), self.reference)


def _only_metrics(reply: Message) -> MetricRecord:
    """The reply's one MetricRecord ``metrics`` (FedAvg reads the first one)."""
    metrics = reply_metrics(reply, METRICS)
    if len(reply.content.metric_records) != 1:
        raise DroppedError(
            f"reply has {len(reply.content.metric_records)} metric records; "
            f"expected one ('{METRICS}')"
        )
    return metrics


def _positive_count(metrics: MetricRecord) -> int:
    count = value_of(metrics, NUM_EXAMPLES, int)
    if count < 1:
        raise DroppedError(f"reply has '{NUM_EXAMPLES}' = {count}; expected >= 1")
    return count


def _check_evaluation(reply: Message) -> None:
    """One MetricRecord with the test frames, the partition and shares in [0, 1]."""
    metrics = _only_metrics(reply)
    _positive_count(metrics)
    value_of(metrics, PARTITION_ID, int)
    for key in k.EVALUATION_KEYS:
        value = metrics.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0.0 <= value <= 1.0
        ):
            raise DroppedError(
                f"reply has '{key}' = {value!r}; expected a share in [0, 1]"
            )


def _floats(record: Mapping[str, object]) -> dict[str, float]:
    return {key: float(v) for key, v in record.items() if isinstance(v, int | float)}


# ------------------------------------------------------------------ the run
def serve(grid: Grid, context: Context, settings: RunSettings[InfiConfig]) -> None:
    """Train the filters (federated or local-only), report and record them."""
    from edgecloud.capabilities.infi.filter_records import (
        build_filter,
        save_filter,
        to_arrays,
    )

    common, config = settings.common, settings.section
    nodes = wait_for_nodes(grid, common.min_available_nodes, common.round_timeout)
    label = (
        f"infi: {config.mode} skip filters for {config.task} "
        f"({len(nodes)} nodes, target accuracy {config.target_accuracy:g})"
    )
    recorder = make_recorder(settings, label)
    recorder.start(resume=False)
    try:
        initial = to_arrays(build_filter(config.size, common.seed))
        result, strategy = train(grid, settings, initial, recorder, context.run_id)
        stats = strategy.round_stats[common.num_server_rounds]
        assert stats.evaluation is not None  # aggregate_evaluate raises otherwise
        summary = _summarize(config, stats)
        recorder.set_summary(summary)
        if config.mode == "federated":
            out = common.output_path / k.FILTER_FILE
            save_filter(result.arrays, out)
            log(INFO, "infi: global filter saved to %s", out)
    except BaseException:
        recorder.finish(status="failed")
        raise
    recorder.finish()


def train(
    grid: Grid,
    settings: RunSettings[InfiConfig],
    initial: ArrayRecord,
    recorder: RunRecorder,
    run_id: int,
) -> tuple[Result, FilterFedAvg]:
    """``num-server-rounds`` of FilterFedAvg; one record per round."""
    common, config = settings.common, settings.section
    strategy = FilterFedAvg(
        average=config.mode == "federated",
        num_rounds=common.num_server_rounds,
        reference=initial,
        min_available_nodes=common.min_available_nodes,
        fraction_train=common.fraction_train,
    )
    # A node's own filter belongs to this call: another run in the same
    # simulation (same run id, same node state) must not continue it.
    marks = {
        k.OWN_FILTER: config.mode == "local",
        k.SESSION: f"{run_id}-{uuid.uuid4().hex}",
    }
    started = time.monotonic()

    def record_round(server_round: int, _arrays: ArrayRecord) -> MetricRecord | None:
        nonlocal started
        if server_round == 0:
            return None
        stats = strategy.round_stats[server_round]
        extra = dict(stats.train_metrics)
        train_loss = extra.pop(TRAIN_LOSS, None)
        accuracy = None
        if stats.evaluation is not None:
            extra.update(stats.evaluation)
            accuracy = extra.pop(k.ACCURACY)
        now = time.monotonic()
        recorder.record_round(
            RoundRecord(
                round=server_round,
                train_loss=train_loss,
                federated_accuracy=accuracy,
                bytes_up=stats.traffic.bytes_up,
                bytes_down=stats.traffic.bytes_down,
                seconds=now - started,
                train_replies=stats.train_replies,
                failures=stats.failures,
                extra=extra,
            ),
            None,
            {},
        )
        started = now
        return None

    result: Result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=common.num_server_rounds,
        timeout=common.round_timeout,
        train_config=ConfigRecord(marks),  # type: ignore[arg-type]
        evaluate_config=ConfigRecord(marks),  # type: ignore[arg-type]
        evaluate_fn=record_round,
    )
    return result, strategy


def _summarize(config: InfiConfig, stats: RoundStats) -> dict[str, object]:
    """The run's summary; logs one line per node and the example-weighted mean."""
    assert stats.evaluation is not None
    per_node = {}
    for report in sorted(stats.node_reports, key=lambda r: r[PARTITION_ID]):
        partition = int(report[PARTITION_ID])
        per_node[str(partition)] = {
            NUM_EXAMPLES: int(report[NUM_EXAMPLES]),
            **{key: report[key] for key in k.EVALUATION_KEYS},
        }
        _log_line(f"infi {config.mode}: node {partition}", report)
    mean = stats.evaluation
    _log_line(f"infi {config.mode}: example-weighted mean", mean)
    return {
        **mean,
        k.NODES: len(stats.node_reports),
        NUM_EXAMPLES: int(sum(r[NUM_EXAMPLES] for r in stats.node_reports)),
        k.PER_NODE: per_node,
    }


def _log_line(what: str, values: Mapping[str, float]) -> None:
    log(
        INFO,
        "%s: filter rate %.3f at accuracy %.3f (optimum %.3f, r_N %.3f)",
        what,
        values[k.FILTER_RATE],
        values[k.ACCURACY],
        values[k.OPTIMUM_FILTER_RATE],
        values[k.REDUNDANT_SHARE],
    )
