"""RoundTracker: bytes, failures, partitions, round offsets; metric aggregation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
import pytest
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)

from edgecloud.capabilities.fl.delegating import DelegatingStrategy
from edgecloud.capabilities.fl.round_tracking import (
    RoundTracker,
    aggregate_scalar_metrics,
)
from edgecloud.workflow.traffic import message_bytes
from tests.conftest import metadata


class _Recording(DelegatingStrategy):
    """A fake inner strategy recording the rounds it is called with."""

    def __init__(self) -> None:
        self.rounds: list[tuple[str, int]] = []

    def configure_train(self, server_round, arrays, config, grid):  # type: ignore[no-untyped-def]
        self.rounds.append(("configure_train", server_round))
        return [
            Message(
                metadata=metadata(0, "train"), content=RecordDict({"arrays": arrays})
            )
            for _ in (1, 2)
        ]

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):  # type: ignore[no-untyped-def]
        self.rounds.append(("aggregate_train", server_round))
        return ArrayRecord(), MetricRecord({"train-loss": 0.5})

    def configure_evaluate(self, server_round, arrays, config, grid):  # type: ignore[no-untyped-def]
        self.rounds.append(("configure_evaluate", server_round))
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):  # type: ignore[no-untyped-def]
        self.rounds.append(("aggregate_evaluate", server_round))
        return MetricRecord({"eval-accuracy": 0.9})

    def summary(self) -> None:
        pass


def test_counts_bytes_failures_and_partitions_with_offset(
    make_reply: Callable[..., Message],
) -> None:
    # Prepare
    inner = _Recording()
    tracker = RoundTracker(inner, round_offset=3)
    arrays = ArrayRecord([np.zeros(100, dtype=np.float32)])
    ok = make_reply(
        11,
        arrays={"0": np.zeros(100, dtype=np.float32)},
        metrics={"num-examples": 5, "partition-id": 0, "label-histogram": [5, 0]},
    )
    failed = make_reply(12, error="ValueError: boom\nlast line of the traceback")

    # Execute
    sent = list(tracker.configure_train(1, arrays, ConfigRecord(), grid=None))  # type: ignore[arg-type]
    tracker.aggregate_train(1, [ok, failed])
    tracker.aggregate_evaluate(1, [])
    stats = tracker.finish_round(4)

    # Assert: the inner strategy and clients see absolute round 4
    assert ("configure_train", 4) in inner.rounds and (
        "aggregate_train",
        4,
    ) in inner.rounds
    assert stats.traffic.bytes_down == sum(message_bytes(m) for m in sent) > 2 * 400
    assert stats.traffic.bytes_up == message_bytes(ok)
    assert stats.traffic.exchanges == 1
    assert stats.failures == 1 and stats.train_replies == 1
    assert stats.train_metrics == {"train-loss": 0.5}
    assert stats.evaluate_metrics == {"eval-accuracy": 0.9}
    assert tracker.partitions[0]["label-histogram"] == [5, 0]
    assert tracker.partitions[0]["node-id"] == 11


def test_failure_is_logged_with_node_id(
    make_reply: Callable[..., Message], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    tracker = RoundTracker(_Recording())
    logger = __import__("logging").getLogger("flwr")
    logger.addHandler(caplog.handler)

    # Execute
    try:
        tracker.aggregate_train(
            2, [make_reply(99, error="Traceback...\nValueError: boom")]
        )
    finally:
        logger.removeHandler(caplog.handler)

    # Assert
    assert "round 2: train failed on node 99" in caplog.text
    assert "ValueError: boom" in caplog.text


class _SendsToNode42(_Recording):
    """Configures one message to node 42, as a grid would have sent it."""

    def configure_train(self, server_round, arrays, config, grid):  # type: ignore[no-untyped-def]
        meta = Metadata(
            run_id=1,
            message_id="sent-to-42",  # set by the grid when it pushes the message
            src_node_id=0,
            dst_node_id=42,
            reply_to_message_id="",
            group_id="1",
            created_at=0.0,
            ttl=3600.0,
            message_type="train",
        )
        return [Message(metadata=meta, content=RecordDict({"arrays": arrays}))]


def test_error_reply_from_the_superlink_names_the_node_the_message_went_to(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: in deployment an error reply for a node that died mid-round comes
    # from the SuperLink (src_node_id 1), answering the message sent to node 42
    tracker = RoundTracker(_SendsToNode42())
    tracker.configure_train(1, ArrayRecord(), ConfigRecord(), grid=None)  # type: ignore[arg-type]
    died = Message(
        metadata=metadata(1, "train", reply_to="sent-to-42"),
        error=Error(code=5, reason="node unavailable"),
    )
    logger = logging.getLogger("flwr")
    logger.addHandler(caplog.handler)

    # Execute
    try:
        tracker.aggregate_train(1, [died])
    finally:
        logger.removeHandler(caplog.handler)

    # Assert
    assert "round 1: train failed on node 42" in caplog.text
    assert "on node 1 " not in caplog.text


def test_aggregate_scalar_metrics_weights_and_skips_client_facts() -> None:
    # Prepare
    records = [
        RecordDict(
            {
                "metrics": MetricRecord(
                    {
                        "num-examples": 30,
                        "train-loss": 1.0,
                        "partition-id": 0,
                        "label-histogram": [30, 0],
                    }
                )
            }
        ),
        RecordDict(
            {
                "metrics": MetricRecord(
                    {
                        "num-examples": 10,
                        "train-loss": 3.0,
                        "partition-id": 1,
                        "label-histogram": [0, 10],
                    }
                )
            }
        ),
    ]

    # Execute
    metrics = aggregate_scalar_metrics(records, "num-examples")

    # Assert
    assert dict(metrics) == {"train-loss": pytest.approx(1.5)}


def test_error_replies_have_zero_bytes(make_reply: Callable[..., Message]) -> None:
    assert message_bytes(make_reply(1, error="x")) == 0


def test_aggregated_float64_is_cast_back_to_the_sent_dtype() -> None:
    # Prepare: an inner strategy that upcasts (as Flower 1.41's FedAdam does)
    class _Upcasting(_Recording):
        def aggregate_train(self, server_round, replies):  # type: ignore[no-untyped-def]
            return ArrayRecord([np.ones(3, dtype=np.float64)]), None

    tracker = RoundTracker(_Upcasting())
    sent = ArrayRecord([np.zeros(3, dtype=np.float32)])
    list(tracker.configure_train(1, sent, ConfigRecord(), grid=None))  # type: ignore[arg-type]

    # Execute
    arrays, _ = tracker.aggregate_train(1, [])

    # Assert
    assert arrays is not None and arrays["0"].dtype == "float32"


class _Order(_Recording):
    """Records the order in which replies reach the inner strategy."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):  # type: ignore[no-untyped-def]
        self.seen = [r.metadata.src_node_id for r in replies]
        return super().aggregate_train(server_round, replies)


def test_replies_reach_the_aggregation_in_partition_order(
    make_reply: Callable[..., Message],
) -> None:
    # Prepare: replies arrive in completion order, which varies between runs;
    # floating-point sums depend on the order they are added in
    inner = _Order()
    tracker = RoundTracker(inner)
    arrived = [
        make_reply(30, metrics={"num-examples": 1, "partition-id": 2}),
        make_reply(99, error="node lost"),
        make_reply(10, metrics={"num-examples": 1, "partition-id": 0}),
        make_reply(20, metrics={"num-examples": 1, "partition-id": 1}),
    ]

    # Execute
    tracker.aggregate_train(1, arrived)
    first = list(inner.seen)
    tracker.aggregate_train(2, list(reversed(arrived)))

    # Assert: the same order both times: partitions 0, 1, 2, then the failure
    assert first == inner.seen == [10, 20, 30, 99]
