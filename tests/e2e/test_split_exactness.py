"""Split learning over Flower messages is exact: one client == centralised training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgecloud.data.partitioning import PartitionSpec
from edgecloud.local_simulation import make_run_config, run_local_simulations
from edgecloud.results import latest_checkpoint, load_checkpoint
from edgecloud.tasks import get_task, state_to_numpy
from edgecloud.tasks.split_steps import batch_schedule
from edgecloud.workflow.seeds import client_round_seed

pytestmark = pytest.mark.slow

ROUNDS = 2
SHARED = {
    "capability": "split",
    "num-server-rounds": ROUNDS,
    "local-epochs": 1,
    "batch-size": 64,
    "min-available-nodes": 1,
}
MODES = ("split", "split-ushaped", "splitfed-v1", "splitfed-v2")


def _centralised(config: dict[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
    """The unsplit model, one SGD optimizer, the clients' batch order."""
    task = get_task(config["task"])
    torch.manual_seed(config["seed"])
    model = task.build_model()
    data = task.load_client_data(
        "digits", PartitionSpec("iid", 1, config["seed"]), 0, Path("."), False
    ).train
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config["split.lr"], momentum=config["momentum"]
    )
    for rnd in range(1, ROUNDS + 1):
        schedule = batch_schedule(
            len(data),
            config["batch-size"],
            config["local-epochs"],
            client_round_seed(config["seed"], rnd, 0),
        )
        for rows in schedule:
            x = task.preprocess(torch.from_numpy(data.features[rows]))
            loss = torch.nn.functional.cross_entropy(
                model(x), torch.from_numpy(data.labels[rows])
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return state_to_numpy(model)


@pytest.fixture(scope="module")
def final_states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("exact")
    runs: dict[str, dict[str, Any]] = {
        mode: {"split.mode": mode, "output-dir": str(root / mode)} for mode in MODES
    }
    # the split-based FL notes' "several local iterations, then aggregate": the
    # client keeps its own front between syncs (round 2 starts from local state)
    runs["splitfed-v1-sync2"] = {
        "split.mode": "splitfed-v1",
        "split.sync-interval": 2,
        "output-dir": str(root / "splitfed-v1-sync2"),
    }
    errors = run_local_simulations(runs, shared=SHARED, num_supernodes=1)
    states: dict[str, Any] = {}
    for mode in runs:
        assert errors[mode] is None, f"{mode}: {errors[mode]!r}"
        path = latest_checkpoint(root / mode / "checkpoints")
        assert path is not None
        checkpoint = load_checkpoint(path)
        assert checkpoint.round == ROUNDS
        states[mode] = checkpoint.arrays
        results = json.loads((root / mode / "results.json").read_text())
        states[f"{mode}/extra"] = results["rounds"][-1]["extra"]
    return states


@pytest.mark.parametrize("mode", ["split", "split-ushaped"])
def test_one_client_equals_centralised_training(
    final_states: dict[str, Any], mode: str
) -> None:
    # Prepare
    reference = _centralised(make_run_config(SHARED))

    # Assert
    for key, value in reference.items():
        np.testing.assert_allclose(final_states[mode][key], value, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["splitfed-v1", "splitfed-v2", "splitfed-v1-sync2"])
def test_splitfed_with_one_client_equals_split(
    final_states: dict[str, Any], mode: str
) -> None:
    for key, value in final_states["split"].items():
        np.testing.assert_allclose(final_states[mode][key], value, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_trained_model_serves_split_inference_over_the_channel(
    final_states: dict[str, Any], mode: str
) -> None:
    # Assert: the device part on the client, the server part in the ServerApp,
    # predictions returned sealed and scored on the client's own labels
    extra = final_states[f"{mode}/extra"]
    assert extra["split-inference-examples"] > 200
    assert extra["split-inference-accuracy"] > 0.7
    assert extra["split-inference-bytes"] > 0
