"""PacketGame's server side: FedAvg of the contextual predictor, then live analytics.

``mode="train"``: Flower's :class:`~flwr.serverapp.strategy.FedAvg` averages the
predictor's weights over ``num-server-rounds`` (:class:`PredictorFedAvg` only
retargets its train messages and keeps each round's numbers); the trained
weights are saved into ``output-dir``, then one analytics round measures them.
``mode="analytics"``: one analytics round with the predictor of
``packetgame.predictor`` (or an untrained one). An analytics round sends the
predictor to every connected node, each runs the gating policy over its own live
streams (:func:`~edgecloud.packetgame.online.run_online`) and reports what it
decoded, saved and served; :func:`aggregate_analytics` weights by frames.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from logging import INFO, WARNING
from typing import TYPE_CHECKING

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from edgecloud.capabilities.packetgame import keys as k
from edgecloud.capabilities.packetgame.config import PacketGameConfig
from edgecloud.exceptions import InconsistentRepliesError
from edgecloud.results import RoundRecord, RunRecorder
from edgecloud.settings import RunSettings
from edgecloud.workflow.keys import (
    ARRAYS,
    CONFIG,
    METRICS,
    NUM_EXAMPLES,
    SERVER_ROUND,
    TRAIN_LOSS,
)
from edgecloud.workflow.nodes import wait_for_nodes
from edgecloud.workflow.run_setup import make_recorder
from edgecloud.workflow.traffic import Traffic

if TYPE_CHECKING:
    from flwr.serverapp.strategy import Result

# What a node must report after an analytics round (summed or frame-weighted).
ANALYTICS_KEYS = (
    k.FRAMES,
    k.FRAMES_DECODED,
    k.ACCURACY,
    k.SPENT,
    k.DECODE_ALL_COST,
    k.DECISIONS,
    k.DECISION_SECONDS,
    k.LIVE_ROUNDS,
)


class PredictorFedAvg(FedAvg):
    """FedAvg (McMahan et al., 2017) of the PacketGame predictor's weights.

    Unchanged FedAvg except that train messages are typed ``MSG_TRAIN`` (the FL
    capability's default ``train`` handler must not get them) and each round's
    reply counts and aggregated metrics are kept for the run's records. The
    client **must** load ``arrays``, fit the predictor on its own feedback log
    and reply with exactly one ArrayRecord and one MetricRecord holding
    ``num-examples`` (its training rows).
    """

    def __init__(self, *, min_available_nodes: int, fraction_train: float) -> None:
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=0.0,  # analytics runs after training, not per round
            min_available_nodes=min_available_nodes,
            min_train_nodes=1,
        )
        self.round_stats: dict[int, tuple[MetricRecord | None, int, int, Traffic]] = {}
        self._traffic = Traffic()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """FedAvg's train messages, retyped for the PacketGame handler."""
        messages = list(super().configure_train(server_round, arrays, config, grid))
        for message in messages:
            message.metadata.message_type = k.MSG_TRAIN
        self._traffic = Traffic()
        self._traffic.sent(messages)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """FedAvg's aggregate; remembers metrics, replies, failures and traffic."""
        replies = list(replies)
        failures = sum(r.has_error() for r in replies)
        self._traffic.received(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is None:
            raise InconsistentRepliesError(
                f"round {server_round}: no usable train reply ({failures} of "
                f"{len(replies)} failed); expected at least one node to train"
            )
        self.round_stats[server_round] = (
            metrics,
            len(replies) - failures,
            failures,
            self._traffic,
        )
        return arrays, metrics


# ------------------------------------------------------------------ aggregation
def aggregate_analytics(reports: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The federation's analytics numbers from each node's report.

    Frames, costs and decisions add up; accuracy is weighted by frames; ``saved``
    and ``decisions-per-second`` are recomputed from the sums (not averaged).
    """
    if not reports:
        raise InconsistentRepliesError("no analytics report to aggregate")
    total = {key: float(sum(r[key] for r in reports)) for key in ANALYTICS_KEYS}
    frames = total[k.FRAMES]
    accuracy = (
        sum(r[k.ACCURACY] * r[k.FRAMES] for r in reports) / frames if frames else 1.0
    )
    cost = total[k.DECODE_ALL_COST]
    seconds = total[k.DECISION_SECONDS]
    return {
        **total,
        k.ACCURACY: accuracy,
        k.SAVED: 1.0 - total[k.SPENT] / cost if cost else 0.0,
        k.DECISIONS_PER_SECOND: total[k.DECISIONS] / seconds if seconds else 0.0,
        k.NODES: float(len(reports)),
    }


def _read_report(reply: Message) -> dict[str, float]:
    """A node's analytics metrics, checked."""
    if METRICS not in reply.content.metric_records:
        raise InconsistentRepliesError(
            f"analytics reply of node {reply.metadata.src_node_id} has no "
            f"'{METRICS}' record; expected one with {list(ANALYTICS_KEYS)}"
        )
    record = reply.content.metric_records[METRICS]
    missing = [key for key in ANALYTICS_KEYS if key not in record]
    if missing:
        raise InconsistentRepliesError(
            f"analytics reply of node {reply.metadata.src_node_id} lacks {missing}; "
            f"expected {list(ANALYTICS_KEYS)}"
        )
    return {key: float(record[key]) for key in ANALYTICS_KEYS}  # type: ignore[arg-type]


# ------------------------------------------------------------------ the run
def serve(
    grid: Grid, context: Context, settings: RunSettings[PacketGameConfig]
) -> None:
    """Train the predictor (``mode="train"``) and/or run one analytics round."""
    del context  # no per-run server state beyond the recorder
    from edgecloud.capabilities.packetgame.predictor_records import (
        build_predictor,
        load_predictor,
        save_predictor,
        to_arrays,
    )

    common, config = settings.common, settings.section
    nodes = wait_for_nodes(grid, common.min_available_nodes, common.round_timeout)
    label = (
        f"packetgame: {config.mode}, {config.policy} on {config.model} "
        f"({len(nodes)} edge servers, budget {config.budget:g})"
    )
    recorder = make_recorder(settings, label)
    recorder.start(resume=False)
    try:
        path = config.predictor_path()
        if path is not None:
            arrays = load_predictor(path, config.key_of("predictor"), config.window)
        else:
            arrays = to_arrays(build_predictor(config.window, common.seed))
        analytics_round = 1
        if config.mode == "train":
            arrays = train_federated(grid, settings, arrays, recorder)
            out = common.output_path / k.PREDICTOR_FILE
            save_predictor(arrays, out)
            log(INFO, "packetgame: trained predictor saved to %s", out)
            analytics_round = common.num_server_rounds + 1
        run_analytics(grid, settings, arrays, recorder, analytics_round)
    except BaseException:
        recorder.finish(status="failed")
        raise
    recorder.finish()


def train_federated(
    grid: Grid,
    settings: RunSettings[PacketGameConfig],
    arrays: ArrayRecord,
    recorder: RunRecorder,
) -> ArrayRecord:
    """``num-server-rounds`` of FedAvg on the predictor; one record per round."""
    common = settings.common
    strategy = PredictorFedAvg(
        min_available_nodes=common.min_available_nodes,
        fraction_train=common.fraction_train,
    )
    started = time.monotonic()

    def record_round(server_round: int, _arrays: ArrayRecord) -> MetricRecord | None:
        nonlocal started
        if server_round == 0:
            return None
        metrics, replies, failures, traffic = strategy.round_stats[server_round]
        values = {key: float(v) for key, v in (metrics or {}).items()}  # type: ignore[arg-type]
        now = time.monotonic()
        recorder.record_round(
            RoundRecord(
                round=server_round,
                train_loss=values.pop(TRAIN_LOSS, None),
                bytes_up=traffic.bytes_up,
                bytes_down=traffic.bytes_down,
                seconds=now - started,
                train_replies=replies,
                failures=failures,
                extra=values,
            ),
            None,
            {},
        )
        started = now
        return None

    result: Result = strategy.start(
        grid=grid,
        initial_arrays=arrays,
        num_rounds=common.num_server_rounds,
        timeout=common.round_timeout,
        train_config=ConfigRecord(),
        evaluate_fn=record_round,
    )
    return result.arrays


def run_analytics(
    grid: Grid,
    settings: RunSettings[PacketGameConfig],
    arrays: ArrayRecord,
    recorder: RunRecorder,
    server_round: int,
) -> dict[str, float]:
    """Every connected node gates its live streams with ``arrays``; one record."""
    common = settings.common
    nodes = wait_for_nodes(grid, common.min_available_nodes, common.round_timeout)
    started = time.monotonic()
    messages = [
        Message(
            RecordDict(
                {ARRAYS: arrays, CONFIG: ConfigRecord({SERVER_ROUND: server_round})}
            ),
            dst_node_id=node,
            message_type=k.MSG_ANALYTICS,
            group_id=f"packetgame-analytics-{server_round}",
        )
        for node in nodes
    ]
    traffic = Traffic()
    traffic.sent(messages)
    replies = list(grid.send_and_receive(messages, timeout=common.round_timeout))
    traffic.received(replies)
    failed = [r for r in replies if r.has_error()]
    for reply in failed:
        log(
            WARNING,
            "packetgame analytics: node %s failed: %s",
            reply.metadata.src_node_id,
            reply.error.reason,
        )
    reports = [_read_report(r) for r in replies if not r.has_error()]
    if not reports:
        raise InconsistentRepliesError(
            f"analytics round {server_round}: no node reported ({len(failed)} "
            f"failed, {len(nodes) - len(replies)} timed out); expected at least one"
        )
    summary = aggregate_analytics(reports)
    summary[NUM_EXAMPLES] = summary[k.FRAMES]
    recorder.record_round(
        RoundRecord(
            round=server_round,
            federated_accuracy=summary[k.ACCURACY],
            bytes_up=traffic.bytes_up,
            bytes_down=traffic.bytes_down,
            seconds=time.monotonic() - started,
            train_replies=len(reports),
            failures=len(nodes) - len(reports),
            extra={key: v for key, v in summary.items() if key != k.ACCURACY},
        ),
        None,
        {},
    )
    recorder.set_summary(summary)
    log(
        INFO,
        "packetgame analytics: accuracy %.3f, decode saved %.3f, %.0f decisions/s",
        summary[k.ACCURACY],
        summary[k.SAVED],
        summary[k.DECISIONS_PER_SECOND],
    )
    return summary
