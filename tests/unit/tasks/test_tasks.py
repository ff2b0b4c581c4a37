"""Tasks: split models compose, training is deterministic, FedProx anchors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgecloud.data.partitioning import PartitionSpec
from edgecloud.tasks import (
    TASKS,
    SplitModel,
    TrainSettings,
    get_task,
    load_numpy_state,
    state_to_numpy,
)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_split_parts_compose_to_the_whole_model(name: str) -> None:
    # Prepare
    task = get_task(name)
    torch.manual_seed(0)
    model = task.build_model().eval()
    shape = {"digits-cnn": (4, 1, 8, 8), "testbed-vehicles": (4, 3, 120, 160)}.get(
        name, (4, 3, 32, 32)
    )
    x = torch.randn(shape)

    # Execute
    front, back = task.split_parts(model)
    smashed = front(x)

    # Assert
    assert smashed.shape[0] == 4
    torch.testing.assert_close(back(smashed), model(x), rtol=0, atol=1e-6)


def test_unknown_task_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="digits-cnn"):
        get_task("resnet-1000")


def _client_data(partition_id: int = 0):  # type: ignore[no-untyped-def]
    task = get_task("digits-cnn")
    spec = PartitionSpec("iid", num_partitions=5, seed=3)
    return task, task.load_client_data("digits", spec, partition_id, Path("."), False)


def test_client_data_is_split_80_20_and_histogram_counts_all() -> None:
    # Execute
    _, data = _client_data()

    # Assert
    total = len(data.train) + len(data.val)
    assert abs(len(data.val) - 0.2 * total) <= 10
    assert sum(data.label_histogram) == total


def test_partition_id_out_of_range() -> None:
    task = get_task("digits-cnn")
    with pytest.raises(ValueError, match="partition-id is 5"):
        task.load_client_data("digits", PartitionSpec("iid", 5, 0), 5, Path("."), False)


def test_training_is_deterministic_and_learns() -> None:
    # Prepare
    task, data = _client_data()
    settings = TrainSettings(epochs=3, batch_size=16, lr=0.05, momentum=0.9, seed=11)
    results, states = [], []

    # Execute
    for _ in range(2):
        torch.manual_seed(0)
        model = task.build_model()
        before = task.evaluate(model, data.val, 64)
        results.append(task.train(model, data.train, settings))
        states.append(state_to_numpy(model))
    after = task.evaluate(model, data.val, 64)

    # Assert
    for key in states[0]:
        np.testing.assert_array_equal(states[0][key], states[1][key])
    assert results[0].train_loss == results[1].train_loss
    assert after.loss < before.loss and after.accuracy > 0.5
    assert results[0].num_examples == len(data.train)


def test_fedprox_term_keeps_weights_closer_to_the_global_model() -> None:
    # Prepare
    task, data = _client_data()
    torch.manual_seed(0)
    anchor = state_to_numpy(task.build_model())
    drift = {}

    # Execute
    for mu in (0.0, 5.0):
        model = task.build_model()
        load_numpy_state(model, anchor)
        task.train(
            model, data.train, TrainSettings(2, 16, 0.05, 0.9, seed=1, proximal_mu=mu)
        )
        drift[mu] = sum(
            float(np.sum((v - anchor[k]) ** 2))
            for k, v in state_to_numpy(model).items()
        )

    # Assert
    assert drift[5.0] < 0.8 * drift[0.0]


def test_initial_loss_is_the_loss_of_the_received_model() -> None:
    # Prepare
    task, data = _client_data()
    torch.manual_seed(0)
    model = task.build_model()
    expected = task.evaluate(model, data.train, 16).loss

    # Execute
    result = task.train(
        model, data.train, TrainSettings(1, 16, 0.05, 0.9, 0, report_initial_loss=True)
    )

    # Assert
    assert result.initial_loss == pytest.approx(expected)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_splittable_flag_matches_the_model(name: str) -> None:
    # The config trusts the flag instead of building the model on every parse.
    task = get_task(name)
    assert task.splittable == isinstance(task.build_model(), SplitModel)
