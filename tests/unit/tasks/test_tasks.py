"""Tasks: split models compose, training is deterministic, FedProx anchors, hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from torch import nn

from edgecloud.data.partitioning import PartitionSpec
from edgecloud.tasks import (
    TASKS,
    SplitModel,
    TrainSettings,
    get_task,
    load_numpy_state,
    state_to_numpy,
)
from edgecloud.tasks.digits_cnn import DigitsCnn


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


class _WithinOne(DigitsCnn):
    """Digits scored like a counter: a prediction off by one still counts."""

    def correct(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (predictions - targets).abs() <= 1


class _ZeroLoss(DigitsCnn):
    """Digits with a loss that is zero everywhere: nothing to learn."""

    def loss(
        self,
        outputs: torch.Tensor,
        targets: torch.Tensor,
        reduction: Literal["mean", "sum"] = "mean",
    ) -> torch.Tensor:
        return 0 * super().loss(outputs, targets, reduction)


def test_evaluate_adds_up_summed_batch_losses_exactly() -> None:
    # Prepare: 7 does not divide the 58 validation rows (a short last batch)
    task, data = _client_data()
    torch.manual_seed(0)
    model = task.build_model().eval()
    expected_sum, expected_right = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data.val), 7):
            x = torch.from_numpy(data.val.features[start : start + 7])
            y = torch.from_numpy(data.val.labels[start : start + 7])
            logits = model(task.preprocess(x))
            expected_sum += float(
                nn.functional.cross_entropy(logits, y, reduction="sum")
            )
            expected_right += int((logits.argmax(dim=1) == y).sum())

    # Execute
    result = task.evaluate(model, data.val, 7)

    # Assert: bit-identical to a summed cross-entropy (mean x batch size is not)
    assert result.loss == expected_sum / len(data.val)
    assert result.accuracy == expected_right / len(data.val)


def test_evaluate_counts_what_the_correct_hook_calls_right() -> None:
    # Prepare
    _, data = _client_data()
    torch.manual_seed(0)
    model = DigitsCnn().build_model()
    with torch.no_grad():
        logits = model(DigitsCnn().preprocess(torch.from_numpy(data.val.features)))
    off_by = (logits.argmax(dim=1) - torch.from_numpy(data.val.labels)).abs()

    # Execute
    exact = DigitsCnn().evaluate(model, data.val, 16)
    within_one = _WithinOne().evaluate(model, data.val, 16)

    # Assert
    assert exact.accuracy == int((off_by == 0).sum()) / len(data.val)
    assert within_one.accuracy == int((off_by <= 1).sum()) / len(data.val)
    assert within_one.accuracy > exact.accuracy
    assert within_one.loss == exact.loss


def test_training_minimises_the_loss_hook() -> None:
    # Prepare
    _, data = _client_data()
    task = _ZeroLoss()
    torch.manual_seed(0)
    model = task.build_model()
    before = state_to_numpy(model)

    # Execute
    result = task.train(model, data.train, TrainSettings(1, 16, 0.05, 0.9, seed=0))

    # Assert: a zero loss has zero gradients, so SGD leaves every weight alone
    assert result.train_loss == 0.0
    for key, value in state_to_numpy(model).items():
        np.testing.assert_array_equal(value, before[key])


def test_by_camera_partitioning_needs_a_camera_task() -> None:
    task = get_task("digits-cnn")
    with pytest.raises(ValueError, match="'digits-cnn' has no cameras"):
        task.load_client_data(
            "digits", PartitionSpec("by-camera", 2, 0), 0, Path("."), False
        )
