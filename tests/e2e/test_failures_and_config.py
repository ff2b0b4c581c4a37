"""Failing clients do not abort a run; a bad run config fails before round 1.

FedAvg and SplitFed-v1 share one simulation (one engine start): the same device
fails once in each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from edgecloud.capabilities.split import keys as split_keys
from edgecloud.client_app import app as edgecloud_client_app
from edgecloud.exceptions import ConfigError
from edgecloud.local_simulation import run_local_simulation, run_local_simulations
from edgecloud.workflow.keys import CONFIG, SERVER_ROUND
from tests.e2e.helpers import read_outputs

pytestmark = pytest.mark.slow


class _FailingDevice(ClientApp):
    """Partition 0 fails FL training in round 2 and its 4th split message.

    Everything else is the real app.
    """

    def __init__(self) -> None:
        super().__init__()

    def __call__(self, message: Message, context: Context) -> Message:
        if context.node_config["partition-id"] == 0:
            config = message.content.config_records.get(CONFIG)
            if (
                message.metadata.message_type == "train"
                and config is not None
                and config[SERVER_ROUND] == 2
            ):
                raise RuntimeError("simulated device failure in round 2")
            split = message.content.config_records.get(split_keys.CONTROL)
            if split is not None and split[split_keys.EXCHANGE] == 3:
                raise ConnectionError("device lost its network mid-round")
        return edgecloud_client_app(message, context)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def failing_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("failures")
    handler = _Lines()
    logging.getLogger("flwr").addHandler(handler)
    try:
        errors = run_local_simulations(
            {
                "fedavg": {"num-server-rounds": 3, "output-dir": str(root / "fedavg")},
                "splitfed-v1": {
                    "capability": "split",
                    "split.mode": "splitfed-v1",
                    "num-server-rounds": 1,
                    "output-dir": str(root / "splitfed-v1"),
                },
            },
            shared={"local-epochs": 1, "batch-size": 64},
            num_supernodes=4,
            client_app=_FailingDevice(),
        )
    finally:
        logging.getLogger("flwr").removeHandler(handler)
    assert errors == {"fedavg": None, "splitfed-v1": None}
    yield root, "\n".join(handler.lines)


def test_failed_client_is_logged_and_round_aggregates_the_others(
    failing_runs: tuple[Path, str],
) -> None:
    # Prepare
    root, log_text = failing_runs

    # Assert
    results = read_outputs(root / "fedavg")
    rounds: dict[int, Any] = {r["round"]: r for r in results["rounds"]}
    assert results["status"] == "completed" and results["completed_rounds"] == 3
    assert rounds[2]["failures"] == 1 and rounds[2]["train_replies"] == 3
    assert rounds[1]["failures"] == 0 and rounds[3]["train_replies"] == 4
    assert rounds[3]["central_accuracy"] > rounds[1]["central_accuracy"]
    node_of_partition_0 = next(
        p["node-id"] for p in results["partitions"] if p["partition-id"] == 0
    )
    assert f"round 2: train failed on node {node_of_partition_0}" in log_text
    assert "simulated device failure in round 2" in log_text


def test_splitfed_v1_survives_a_client_dropping_mid_round(
    failing_runs: tuple[Path, str],
) -> None:
    # Prepare
    root, log_text = failing_runs

    # Assert: the round finished with the three others, the drop was logged
    results = read_outputs(root / "splitfed-v1")
    final = results["rounds"][-1]
    assert results["status"] == "completed"
    assert final["train_replies"] == 3 and final["failures"] == 1
    assert final["central_accuracy"] > results["rounds"][0]["central_accuracy"]
    assert "dropping node" in log_text and "at exchange 3" in log_text
    assert "device lost its network mid-round" in log_text


def test_invalid_run_config_fails_before_round_one(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="'partitioning' has value 'by-camera'"):
        run_local_simulation(
            {"partitioning": "by-camera", "output-dir": str(tmp_path / "out")},
            num_supernodes=2,
        )
    assert not (tmp_path / "out").exists()  # no round ran, nothing was written
