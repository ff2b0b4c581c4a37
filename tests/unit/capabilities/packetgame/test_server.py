"""PacketGame's server on a fake grid: FedAvg of the predictor, analytics, records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict

from edgecloud.capabilities.packetgame import keys as k
from edgecloud.capabilities.packetgame.config import PacketGameConfig
from edgecloud.capabilities.packetgame.server import aggregate_analytics, serve
from edgecloud.capability import load_run_settings
from edgecloud.exceptions import InconsistentRepliesError
from edgecloud.settings import RunSettings
from tests.fakes import FakeGrid, error_reply, reply

# node -> (training rows, weight offset it adds); analytics report per node
TRAINED = {1: (100, 1.0), 2: (300, 3.0)}
REPORTS = {
    1: {"frames": 100, "accuracy": 0.9, "spent": 20.0, "decode-all-cost": 100.0},
    2: {"frames": 300, "accuracy": 0.5, "spent": 10.0, "decode-all-cost": 100.0},
}


def _report(node: int) -> dict[str, float]:
    base = REPORTS[node]
    return {
        **base,
        "num-examples": base["frames"],
        "frames-decoded": base["frames"] // 2,
        "decisions": base["frames"],
        "decision-seconds": 0.01 * node,
        "live-rounds": 50,
        "saved": 1 - base["spent"] / base["decode-all-cost"],
    }


def _edge_server(fail_analytics: set[int]) -> Callable[[Message], Message]:
    """Fabricated edge servers: shift the weights (train) or report (analytics)."""

    def answer(message: Message) -> Message:
        node = message.metadata.dst_node_id
        if message.metadata.message_type == k.MSG_TRAIN:
            rows, offset = TRAINED[node]
            arrays = message.content.array_records["arrays"]
            shifted = {name: Array(a.numpy() + offset) for name, a in arrays.items()}
            metrics = {"num-examples": rows, "train-loss": 0.1 * node}
            content = RecordDict(
                {"arrays": ArrayRecord(shifted), "metrics": MetricRecord(metrics)}  # type: ignore[arg-type]
            )
            return reply(message, content)
        assert message.metadata.message_type == k.MSG_ANALYTICS
        if node in fail_analytics:
            return error_reply(message, "ValueError: no cameras")
        metrics = MetricRecord(_report(node))  # type: ignore[arg-type]
        return reply(message, RecordDict({"metrics": metrics}))

    return answer


def _settings(
    config: dict[str, Any], **overrides: Any
) -> RunSettings[PacketGameConfig]:
    settings = load_run_settings({**config, **overrides})
    return settings  # type: ignore[return-value]


@pytest.mark.usefixtures("server_identity")
def test_one_train_round_averages_weights_then_analytics_aggregates(
    packetgame_config: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare
    settings = _settings(packetgame_config, **{"num-server-rounds": 1})
    grid = FakeGrid(_edge_server(fail_analytics=set()))

    # Execute
    serve(grid, Context(1, 0, {}, {}, RecordDict()), settings)  # type: ignore[arg-type]

    # Assert: a retyped FedAvg round, then one analytics query to each node
    batches = [batch for batch in grid.sent if batch]  # FedAvg's empty evaluate
    types = [[m.metadata.message_type for m in batch] for batch in batches]
    assert types == [[k.MSG_TRAIN] * 2, [k.MSG_ANALYTICS] * 2]
    initial = batches[0][0].content.array_records["arrays"].to_torch_state_dict()
    sent = batches[1][0].content.array_records["arrays"].to_torch_state_dict()
    for name, tensor in initial.items():  # weighted by rows: (100*1 + 300*3) / 400
        torch.testing.assert_close(sent[name], tensor + 2.5)
    saved = torch.load(tmp_path / "out" / k.PREDICTOR_FILE, weights_only=True)
    assert saved.keys() == sent.keys()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["status"] == "completed"
    train, analytics = results["rounds"]
    assert train["round"] == 1 and train["train_replies"] == 2
    assert train["train_loss"] == pytest.approx((100 * 0.1 + 300 * 0.2) / 400)
    assert analytics["round"] == 2
    assert analytics["federated_accuracy"] == pytest.approx(0.6)  # frame-weighted
    assert analytics["extra"]["saved"] == pytest.approx(1 - 30 / 200)
    assert analytics["extra"]["frames"] == 400
    assert results["summary"]["decisions-per-second"] == pytest.approx(400 / 0.03)


@pytest.mark.usefixtures("server_identity")
def test_analytics_mode_skips_training_and_drops_a_failed_node(
    packetgame_config: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare
    settings = _settings(
        packetgame_config,
        **{"packetgame.mode": "analytics", "packetgame.policy": "temporal"},
    )
    grid = FakeGrid(_edge_server(fail_analytics={2}))

    # Execute
    serve(grid, Context(1, 0, {}, {}, RecordDict()), settings)  # type: ignore[arg-type]

    # Assert
    assert [m.metadata.message_type for m in grid.sent[0]] == [k.MSG_ANALYTICS] * 2
    (only,) = json.loads((tmp_path / "out" / "results.json").read_text())["rounds"]
    assert only["round"] == 1 and only["failures"] == 1
    assert only["federated_accuracy"] == pytest.approx(0.9)
    assert not (tmp_path / "out" / k.PREDICTOR_FILE).exists()


@pytest.mark.usefixtures("server_identity")
def test_no_analytics_report_fails_the_run(
    packetgame_config: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare
    settings = _settings(
        packetgame_config,
        **{"packetgame.mode": "analytics", "packetgame.policy": "temporal"},
    )
    grid = FakeGrid(_edge_server(fail_analytics={1, 2}))

    # Execute / Assert
    with pytest.raises(InconsistentRepliesError, match="no node reported"):
        serve(grid, Context(1, 0, {}, {}, RecordDict()), settings)  # type: ignore[arg-type]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["status"] == "failed"


def test_aggregation_sums_costs_and_weights_accuracy_by_frames() -> None:
    # Execute
    summary = aggregate_analytics([_report(1), _report(2)])

    # Assert: saved from the summed costs, not the mean of the nodes' savings
    assert summary["accuracy"] == pytest.approx((100 * 0.9 + 300 * 0.5) / 400)
    assert summary["saved"] == pytest.approx(0.85)
    assert summary["frames"] == 400 and summary["nodes"] == 2
    assert np.isfinite(summary["decisions-per-second"])
