"""InFi, 2 camera nodes on Flower's simulation engine: federated vs local filters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgecloud.capabilities.infi import keys as k
from edgecloud.local_simulation import run_local_simulations
from tests.e2e.helpers import read_outputs
from tests.unit.capabilities.infi.tiny import tiny_infi_testbed

pytestmark = pytest.mark.slow

TARGET = 0.9


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One simulation, two runs: federated filters, then local-only ones.

    The mode travels in the messages, so both runs share the clients' run
    config (and the engine's start-up); each node serves one training camera.
    """
    testbed = tiny_infi_testbed(tmp_path_factory)
    out = tmp_path_factory.mktemp("infi-runs")
    runs = {
        mode: {"infi.mode": mode, "output-dir": str(out / mode)}
        for mode in ("federated", "local")
    }
    shared = {
        "capability": "infi",
        "num-server-rounds": 2,
        "infi.testbed": str(testbed),
        "infi.task": "person-count",  # the tiny testbed's one black box
        "infi.frame-stride": 1,
        "infi.frame-size": "40x30",
        "infi.local-epochs": 2,
        "infi.target-accuracy": TARGET,
    }
    errors = run_local_simulations(runs, shared=shared, num_supernodes=2)
    assert errors == {"federated": None, "local": None}
    return {mode: out / mode for mode in runs}


@pytest.mark.parametrize("mode", ["federated", "local"])
def test_both_modes_train_two_rounds_then_every_node_reports(
    outputs: dict[str, Path], mode: str
) -> None:
    # Execute
    results = read_outputs(outputs[mode], checkpoints=False)

    # Assert: two rounds of both nodes; the report after the last one
    assert results["status"] == "completed"
    first, last = results["rounds"]
    assert (first["round"], last["round"]) == (1, 2)
    assert first["train_replies"] == last["train_replies"] == 2
    assert first["failures"] == last["failures"] == 0
    assert first["train_loss"] > 0 and first["federated_accuracy"] is None
    assert 0.0 <= last["federated_accuracy"] <= 1.0
    summary = results["summary"]
    assert summary[k.NODES] == 2
    assert summary["num-examples"] == 2 * 30  # the later half of 60 frames each
    assert summary["accuracy"] == pytest.approx(last["federated_accuracy"])
    for node in summary[k.PER_NODE].values():
        assert node["num-examples"] == 30
        for key in k.EVALUATION_KEYS:
            assert 0.0 <= node[key] <= 1.0, key
        r_n = node[k.REDUNDANT_SHARE]
        assert node[k.OPTIMUM_FILTER_RATE] == pytest.approx(min(1, 1 - TARGET + r_n))
        # the threshold kept the target on validation frames (or skipped nothing)
        assert node[k.VALIDATION_ACCURACY] >= TARGET


def test_only_the_federated_run_ships_and_saves_a_filter(
    outputs: dict[str, Path],
) -> None:
    # Execute
    runs: dict[str, Any] = {
        mode: read_outputs(path, checkpoints=False) for mode, path in outputs.items()
    }

    # Assert: local nodes send metrics only; the global filter is on disk
    up = {mode: sum(r["bytes_up"] for r in run["rounds"]) for mode, run in runs.items()}
    assert up["local"] * 10 < up["federated"]
    assert (outputs["federated"] / k.FILTER_FILE).is_file()
    assert not (outputs["local"] / k.FILTER_FILE).exists()
