"""Federated learning on the testbed: whole cameras per client.

In simulation (partitioning "by-camera") and with real SuperNodes that get their
cameras from --node-config.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecloud.data.testbed import ensure_testbed, load_samples, preset
from edgecloud.deploy.flwr_cli import FINISHED_COMPLETED
from edgecloud.local_simulation import run_local_simulations
from edgecloud.tasks.testbed_vehicles import TESTBED_DATASETS
from tests.e2e.helpers import local_federation, read_outputs, run_on

pytestmark = pytest.mark.slow

DATASET = "testbed-tiny"


def _camera_histogram(data_dir: Path, cameras: tuple[int, ...]) -> list[int]:
    name, every = TESTBED_DATASETS[DATASET]
    testbed = ensure_testbed(preset(name), data_dir / DATASET)
    target = load_samples(testbed, cameras, every).target("vehicles")
    return np.bincount(target, minlength=10).tolist()


def test_by_camera_partitioning_trains_fedavg_and_splitfed(tmp_path: Path) -> None:
    # Prepare: 2 clients, the tiny testbed's two training cameras, one each
    data_dir = tmp_path / "data"
    runs = {
        "fedavg": {"output-dir": str(tmp_path / "fedavg")},
        "splitfed-v1": {
            "capability": "split",
            "split.mode": "splitfed-v1",
            "output-dir": str(tmp_path / "splitfed-v1"),
        },
    }

    # Execute
    errors = run_local_simulations(
        runs,
        shared={
            "task": "testbed-vehicles",
            "dataset": DATASET,
            "partitioning": "by-camera",
            "data-dir": str(data_dir),
            "num-server-rounds": 2,
        },
        num_supernodes=2,
    )

    # Assert: both completed; client p trained on exactly camera p
    assert errors == {"fedavg": None, "splitfed-v1": None}
    fedavg = read_outputs(tmp_path / "fedavg")
    assert fedavg["completed_rounds"] == 2
    histograms = {p["partition-id"]: p["label-histogram"] for p in fedavg["partitions"]}
    assert histograms == {
        0: _camera_histogram(data_dir, (0,)),
        1: _camera_histogram(data_dir, (1,)),
    }
    assert histograms[0] != histograms[1]  # natural non-IID domains
    assert 0.0 <= fedavg["rounds"][-1]["central_accuracy"] <= 1.0
    assert read_outputs(tmp_path / "splitfed-v1")["completed_rounds"] == 2


def test_supernodes_get_their_cameras_from_node_config(tmp_path: Path) -> None:
    # Prepare: a real insecure SuperLink and two SuperNodes; node 1 holds cameras
    # 1 and 2 (the insecure deployment's test: a first try on a trusted network)
    data_dir = tmp_path / "data"
    out = tmp_path / "outputs"

    # Execute
    with local_federation(
        tmp_path,
        num_supernodes=2,
        per_node_config=[{"cameras": "0"}, {"cameras": "2,1"}],
    ) as federation:
        status = run_on(
            federation,
            f'task="testbed-vehicles" dataset="{DATASET}" data-dir="{data_dir}" '
            f'num-server-rounds=1 fl.fraction-evaluate=0.0 output-dir="{out}"',
        )

    # Assert: completed; each node trained on exactly its own cameras; every
    # process was stopped by its PID (checked when the federation closed)
    assert status["status"] == FINISHED_COMPLETED, status
    results = read_outputs(out)
    assert results["completed_rounds"] == 1
    histograms = {
        p["partition-id"]: p["label-histogram"] for p in results["partitions"]
    }
    assert histograms == {
        0: _camera_histogram(data_dir, (0,)),
        1: _camera_histogram(data_dir, (2, 1)),
    }
