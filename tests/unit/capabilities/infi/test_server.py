"""InFi's server on a fake grid: FedAvg or local-only rounds, the report, records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict

from edgecloud.capabilities.infi import keys as k
from edgecloud.capabilities.infi.config import InfiConfig
from edgecloud.capabilities.infi.server import serve
from edgecloud.capability import load_run_settings
from edgecloud.exceptions import InconsistentRepliesError
from edgecloud.settings import RunSettings
from tests.fakes import FakeGrid, error_reply, reply

# node -> (training frames, weight offset it adds); its test report
TRAINED = {1: (100, 1.0), 2: (300, 3.0)}
REPORTS = {
    1: {"num-examples": 100, "filter-rate": 0.4, "accuracy": 0.95, "r": 0.3},
    2: {"num-examples": 300, "filter-rate": 0.2, "accuracy": 0.85, "r": 0.1},
}


def _report(node: int) -> dict[str, Any]:
    base = REPORTS[node]
    return {
        "num-examples": base["num-examples"],
        "partition-id": node - 1,
        "num-cameras": 1,
        "filter-rate": base["filter-rate"],
        "accuracy": base["accuracy"],
        "redundant-share": base["r"],
        "optimum-filter-rate": 1 - 0.9 + base["r"],
        "validation-filter-rate": base["filter-rate"],
        "validation-accuracy": 0.9,
    }


Fault = Callable[[int, Message, RecordDict], Message | None]


def _camera_nodes(fault: Fault | None = None) -> Callable[[Message], Message]:
    """Fabricated camera nodes; ``fault`` may replace a node's reply."""

    def answer(message: Message) -> Message:
        node = message.metadata.dst_node_id
        config = message.content.config_records["config"]
        if message.metadata.message_type == k.MSG_TRAIN:
            rows, offset = TRAINED[node]
            metrics = {"num-examples": rows, "train-loss": 0.1 * node}
            content = RecordDict({"metrics": MetricRecord(metrics)})  # type: ignore[arg-type]
            if not config[k.OWN_FILTER]:
                arrays = message.content.array_records["arrays"]
                shifted = {n: Array(a.numpy() + offset) for n, a in arrays.items()}
                content["arrays"] = ArrayRecord(shifted)
        else:
            assert message.metadata.message_type == k.MSG_EVALUATE
            content = RecordDict({"metrics": MetricRecord(_report(node))})
        if fault is not None:
            changed = fault(node, message, content)
            if changed is not None:
                return changed
        return reply(message, content)

    return answer


def _serve(config: dict[str, Any], grid: FakeGrid, **overrides: Any) -> None:
    settings: RunSettings[InfiConfig] = load_run_settings({**config, **overrides})  # type: ignore[assignment]
    serve(grid, Context(1, 0, {}, {}, RecordDict()), settings)


def _results(tmp_path: Path) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "out" / "results.json").read_text()))


def _state(message: Message) -> dict[str, torch.Tensor]:
    return message.content.array_records["arrays"].to_torch_state_dict()


def _batches(grid: FakeGrid) -> list[list[Message]]:
    return [batch for batch in grid.sent if batch]  # FedAvg's empty evaluations


@pytest.mark.usefixtures("server_identity")
def test_federated_rounds_average_by_examples_then_every_node_reports(
    infi_config: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare
    grid = FakeGrid(_camera_nodes())

    # Execute
    _serve(infi_config, grid, **{"num-server-rounds": 2})

    # Assert: two retyped train rounds, one evaluation after the last
    batches = _batches(grid)
    types = [[m.metadata.message_type for m in batch] for batch in batches]
    assert types == [[k.MSG_TRAIN] * 2, [k.MSG_TRAIN] * 2, [k.MSG_EVALUATE] * 2]
    first, second, final = (_state(batch[0]) for batch in batches)
    for name, tensor in first.items():  # weighted by frames: (100*1 + 300*3) / 400
        torch.testing.assert_close(second[name], tensor + 2.5)
        torch.testing.assert_close(final[name], tensor + 5.0)
    saved = torch.load(tmp_path / "out" / k.FILTER_FILE, weights_only=True)
    torch.testing.assert_close(saved, final)
    results = _results(tmp_path)
    assert results["status"] == "completed"
    one, two = results["rounds"]
    assert one["train_replies"] == 2 and one["federated_accuracy"] is None
    assert one["train_loss"] == pytest.approx((100 * 0.1 + 300 * 0.2) / 400)
    assert two["federated_accuracy"] == pytest.approx((100 * 0.95 + 300 * 0.85) / 400)
    assert two["extra"]["filter-rate"] == pytest.approx((100 * 0.4 + 300 * 0.2) / 400)
    assert two["bytes_up"] > 0 and two["bytes_down"] > 0
    summary = results["summary"]
    assert summary["nodes"] == 2 and summary["num-examples"] == 400
    assert summary["optimum-filter-rate"] == pytest.approx(0.1 + 0.15)
    assert summary["per-node"]["1"]["filter-rate"] == 0.2
    assert "partition-id" not in summary  # a node fact, not a mean


@pytest.mark.usefixtures("server_identity")
def test_local_mode_sends_no_weights_and_averages_nothing(
    infi_config: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare
    grid = FakeGrid(_camera_nodes())

    # Execute
    _serve(infi_config, grid, **{"num-server-rounds": 2, "infi.mode": "local"})

    # Assert: every message asks for the node's own filter of one session
    messages = [m for batch in _batches(grid) for m in batch]
    assert len(messages) == 6
    configs = [m.content.config_records["config"] for m in messages]
    assert all(c[k.OWN_FILTER] is True for c in configs)
    assert len({c[k.SESSION] for c in configs}) == 1
    assert all(len(m.content.array_records["arrays"]) == 0 for m in messages)
    assert not (tmp_path / "out" / k.FILTER_FILE).exists()
    results = _results(tmp_path)
    assert [r["train_replies"] for r in results["rounds"]] == [2, 2]
    assert results["rounds"][1]["bytes_up"] < 2000  # metrics only, no weights
    assert results["summary"]["accuracy"] == pytest.approx(0.875)


def _bad_train_weights(node: int, message: Message, content: RecordDict) -> None:
    """Node 2 sends weights of another shape (another filter)."""
    if node == 2 and message.metadata.message_type == k.MSG_TRAIN:
        arrays = content.array_records["arrays"]
        arrays["classifier.bias"] = Array(np.zeros(3, np.float32))


def _bad_accuracy(node: int, message: Message, content: RecordDict) -> None:
    """Node 2 reports an accuracy that is no share."""
    if node == 2 and message.metadata.message_type == k.MSG_EVALUATE:
        content.metric_records["metrics"]["accuracy"] = 1.5


def _no_num_examples(node: int, message: Message, content: RecordDict) -> None:
    """Node 2 forgets FedAvg's weight."""
    if node == 2 and message.metadata.message_type == k.MSG_TRAIN:
        del content.metric_records["metrics"]["num-examples"]


@pytest.mark.parametrize(
    "fault",
    [
        # averaging other shapes would crash the run (or broadcast silently)
        _bad_train_weights,
        # FedAvg would abort on a reply without its weighting key
        _no_num_examples,
    ],
)
@pytest.mark.usefixtures("server_identity")
def test_a_malformed_train_reply_drops_its_node_only(
    infi_config: dict[str, Any], tmp_path: Path, fault: Fault
) -> None:
    # Prepare
    grid = FakeGrid(_camera_nodes(fault))

    # Execute
    _serve(infi_config, grid, **{"num-server-rounds": 1})

    # Assert: the global filter the nodes evaluate is node 1's alone
    train, evaluate = _batches(grid)
    sent, final = _state(train[0]), _state(evaluate[0])
    for name, tensor in sent.items():
        torch.testing.assert_close(final[name], tensor + 1.0)
    (only,) = _results(tmp_path)["rounds"]
    assert only["train_replies"] == 1 and only["failures"] == 1


@pytest.mark.usefixtures("server_identity")
def test_a_malformed_report_drops_its_node_from_the_mean(
    infi_config: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare
    grid = FakeGrid(_camera_nodes(_bad_accuracy))

    # Execute
    _serve(infi_config, grid, **{"num-server-rounds": 1})

    # Assert
    summary = _results(tmp_path)["summary"]
    assert summary["nodes"] == 1 and summary["accuracy"] == pytest.approx(0.95)
    assert list(summary["per-node"]) == ["0"]


@pytest.mark.usefixtures("server_identity")
def test_a_round_without_any_usable_reply_fails_the_run(
    infi_config: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare: every node's ClientApp raised
    def failing(node: int, message: Message, content: RecordDict) -> Message:
        return error_reply(message, "ValueError: too few frames")

    grid = FakeGrid(_camera_nodes(failing))

    # Execute / Assert
    with pytest.raises(InconsistentRepliesError, match="no usable train reply"):
        _serve(infi_config, grid, **{"num-server-rounds": 1})
    assert _results(tmp_path)["status"] == "failed"
