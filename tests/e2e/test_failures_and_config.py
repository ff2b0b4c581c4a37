"""A failing client does not abort the run; a bad run config fails before round 1."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from edgecloud.client_app import app as edgecloud_client_app
from edgecloud.exceptions import ConfigError
from edgecloud.local_simulation import run_local_simulation
from tests.e2e.helpers import read_outputs

pytestmark = pytest.mark.slow


class _FailsInRoundTwo(ClientApp):
    """Partition 0 raises while training in round 2; everything else is the real app."""

    def __init__(self) -> None:
        super().__init__()

    def __call__(self, message: Message, context: Context) -> Message:
        config = message.content.config_records.get("config")
        if (
            message.metadata.message_type == "train"
            and context.node_config["partition-id"] == 0
            and config is not None
            and config["server-round"] == 2
        ):
            raise RuntimeError("simulated device failure in round 2")
        return edgecloud_client_app(message, context)


def test_failed_client_is_logged_and_round_aggregates_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    flwr_logger = logging.getLogger("flwr")
    flwr_logger.addHandler(caplog.handler)

    # Execute
    try:
        run_local_simulation(
            {"num-server-rounds": 3, "output-dir": str(tmp_path)},
            num_supernodes=4,
            client_app=_FailsInRoundTwo(),
        )
    finally:
        flwr_logger.removeHandler(caplog.handler)

    # Assert
    results = read_outputs(tmp_path)
    rounds = {r["round"]: r for r in results["rounds"]}
    assert results["status"] == "completed" and results["completed_rounds"] == 3
    assert rounds[2]["failures"] == 1 and rounds[2]["train_replies"] == 3
    assert rounds[1]["failures"] == 0 and rounds[3]["train_replies"] == 4
    assert rounds[3]["central_accuracy"] > rounds[1]["central_accuracy"]
    node_of_partition_0 = next(
        p["node-id"] for p in results["partitions"] if p["partition-id"] == 0
    )
    assert f"round 2: train failed on node {node_of_partition_0}" in caplog.text
    assert "simulated device failure in round 2" in caplog.text


def test_invalid_run_config_fails_before_round_one(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="'partitioning' has value 'by-camera'"):
        run_local_simulation(
            {"partitioning": "by-camera", "output-dir": str(tmp_path / "out")},
            num_supernodes=2,
        )
    assert not (tmp_path / "out").exists()  # no round ran, nothing was written
