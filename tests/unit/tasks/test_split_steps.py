"""Split compute in-process: exact against unsplit training, BatchNorm included."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from torch import nn

from edgecloud.data.arrays import LabeledArrays
from edgecloud.data.partitioning import PartitionSpec
from edgecloud.tasks import SplitModel, get_task, state_to_numpy
from edgecloud.tasks.digits_cnn import DigitsCnn
from edgecloud.tasks.split_steps import (
    DeviceSide,
    ServerSide,
    TaskSplitOps,
    auxiliary_head,
    auxiliary_state,
    batch_schedule,
    device_modules,
    load_optimizer_state,
    make_optimizer,
    optimizer_state,
    ushaped_parts,
)


def _centralised(model: nn.Module, task, data, schedule) -> None:  # type: ignore[no-untyped-def]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for rows in schedule:
        x = task.preprocess(torch.from_numpy(data.features[rows]))
        loss = nn.functional.cross_entropy(
            model(x), torch.from_numpy(data.labels[rows])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _assert_same(a: nn.Module, b: nn.Module) -> None:
    for (name, x), (_, y) in zip(
        a.state_dict().items(), b.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5, msg=name)


def _protocol(task, model, data, schedule, ushaped: bool, lr: float) -> float:  # type: ignore[no-untyped-def]
    """Train ``model`` in the message order of the split protocol; return last loss."""
    loss = float("nan")
    if ushaped:
        front, middle, head = ushaped_parts(model)
        device = DeviceSide(
            task,
            front,
            make_optimizer(front, lr, 0.9),
            data,
            schedule,
            head,
            make_optimizer(head, lr, 0.9),
        )
        server = ServerSide(
            middle,
            make_optimizer(middle, lr, 0.9),
            model,
            loss_fn=task.loss,
            predict_fn=task.predict,
        )
        for step in range(len(schedule)):
            a, _ = device.activations(step)
            grad_middle, loss = device.head_step(step, server.forward(a))
            device.apply_gradient(step, server.backward_step(a, grad_middle))
        return loss
    device = DeviceSide(
        task, model.front, make_optimizer(model.front, lr, 0.9), data, schedule
    )
    server = ServerSide(
        model.back,
        make_optimizer(model.back, lr, 0.9),
        model,
        loss_fn=task.loss,
        predict_fn=task.predict,
    )
    for step in range(len(schedule)):
        a, y = device.activations(step)
        grad, loss = server.loss_step(a, y)
        device.apply_gradient(step, grad)
    return loss


@pytest.mark.parametrize("ushaped", [False, True], ids=["split", "u-shaped"])
def test_digits_protocol_order_reproduces_centralised_training(ushaped: bool) -> None:
    # Prepare
    task = get_task("digits-cnn")
    data = task.load_client_data(
        "digits", PartitionSpec("iid", 1, 0), 0, Path("."), False
    ).train
    torch.manual_seed(0)
    model = task.build_model()
    assert isinstance(model, SplitModel)
    reference = copy.deepcopy(model)
    schedule = batch_schedule(len(data), 16, 2, seed=5)
    _centralised(reference, task, data, schedule)

    # Execute: the message order of the protocol, in-process
    _protocol(task, model, data, schedule, ushaped, lr=0.05)

    # Assert
    _assert_same(model, reference)


def test_resnet18_batchnorm_statistics_are_updated_once_per_step() -> None:
    # Prepare: the recomputation must not move BatchNorm running statistics again
    task = get_task("resnet18-cifar10")
    rng = np.random.default_rng(0)
    data = LabeledArrays(
        rng.integers(0, 256, (16, 3, 32, 32), dtype=np.uint8),
        rng.integers(0, 10, 16).astype(np.int64),
        10,
    )
    torch.manual_seed(0)
    model = task.build_model()
    reference = copy.deepcopy(model)
    schedule = batch_schedule(len(data), 8, 1, seed=1)
    _centralised(reference, task, data, schedule)

    # Execute
    _protocol(task, model, data, schedule, ushaped=False, lr=0.05)

    # Assert (running_mean/var and num_batches_tracked included)
    _assert_same(model, reference)


def test_optimizer_state_round_trips_and_rejects_mismatches() -> None:
    # Prepare
    layer = nn.Linear(3, 2)
    optimizer = make_optimizer(layer, 0.1, 0.9)
    layer(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    buffers = optimizer_state(optimizer)
    fresh = make_optimizer(layer, 0.1, 0.9)

    # Execute
    load_optimizer_state(fresh, buffers)

    # Assert
    assert optimizer_state(fresh).keys() == buffers.keys()
    with pytest.raises(ValueError, match="does not fit"):
        load_optimizer_state(fresh, {"0": np.zeros((5, 5), dtype=np.float32)})


def test_gradient_of_the_wrong_shape_is_refused() -> None:
    task = get_task("digits-cnn")
    data = task.load_client_data(
        "digits", PartitionSpec("iid", 1, 0), 0, Path("."), False
    ).train
    model = task.build_model()
    device = DeviceSide(
        task,
        model.front,
        make_optimizer(model.front, 0.1, 0.0),
        data,
        batch_schedule(len(data), 16, 1, 0),
    )
    with pytest.raises(ValueError, match="gradient shape"):
        device.apply_gradient(0, np.zeros((16, 511), dtype=np.float32))


def test_ushaped_needs_a_sequential_cloud_part() -> None:
    with pytest.raises(TypeError, match=r"nn\.Sequential"):
        ushaped_parts(SplitModel(nn.Identity(), nn.Linear(2, 2)))


@pytest.mark.parametrize("ushaped", [False, True], ids=["split", "u-shaped"])
@pytest.mark.parametrize(
    "name", ["digits-cnn", "cifar10-cnn", "resnet18-cifar10", "testbed-vehicles"]
)
def test_every_task_with_a_cut_point_trains_in_both_shapes(
    name: str, ushaped: bool
) -> None:
    # Prepare: random data of the task's input shape (only the plumbing matters)
    task = get_task(name)
    rng = np.random.default_rng(0)
    shape = {"digits-cnn": (8, 1, 8, 8), "testbed-vehicles": (8, 3, 120, 160)}.get(
        name, (8, 3, 32, 32)
    )
    features = (
        rng.random(shape).astype(np.float32)
        if name == "digits-cnn"
        else rng.integers(0, 256, shape, dtype=np.uint8)
    )
    data = LabeledArrays(features, rng.integers(0, 10, 8).astype(np.int64), 10)
    torch.manual_seed(0)
    model = task.build_model()
    before = copy.deepcopy(model.state_dict())
    schedule = batch_schedule(8, 4, 1, seed=0)

    # Execute
    loss = _protocol(task, model, data, schedule, ushaped, lr=0.01)

    # Assert: every part moved, the loss is finite
    assert np.isfinite(loss)
    changed = {
        k.split(".")[0]
        for k, v in model.state_dict().items()
        if v.dtype.is_floating_point and not torch.equal(v, before[k])
    }
    assert changed == {"front", "back"}


class _DoubledArgmin(DigitsCnn):
    """Digits with other hooks: twice the cross-entropy, predictions by argmin."""

    def loss(
        self,
        outputs: torch.Tensor,
        targets: torch.Tensor,
        reduction: Literal["mean", "sum"] = "mean",
    ) -> torch.Tensor:
        return 2 * super().loss(outputs, targets, reduction)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.argmin(dim=1)


@pytest.mark.parametrize("ushaped", [False, True], ids=["split", "u-shaped"])
def test_both_sides_compute_the_tasks_loss_and_predictions(ushaped: bool) -> None:
    # Prepare: the same model and batch under the default and the doubled-loss task
    rng = np.random.default_rng(0)
    data = LabeledArrays(
        rng.random((8, 1, 8, 8)).astype(np.float32),
        rng.integers(0, 10, 8).astype(np.int64),
        10,
    )
    schedule = batch_schedule(8, 8, 1, seed=0)
    torch.manual_seed(0)
    initial = state_to_numpy(get_task("digits-cnn").build_model())
    losses, grads, predictions = {}, {}, {}

    # Execute
    for name, task in (
        ("default", get_task("digits-cnn")),
        ("other", _DoubledArgmin()),
    ):
        ops = TaskSplitOps(task, lr=0.05, momentum=0.9, test_set=data, batch_size=8)
        model = ops.new_model(initial)
        front, head = device_modules(model, ushaped)
        device = DeviceSide(
            task,
            front,
            make_optimizer(front, 0.05, 0.9),
            data,
            schedule,
            head,
            None if head is None else make_optimizer(head, 0.05, 0.9),
        )
        server = ops.server_side(model, ushaped)
        a, y = device.activations(0)
        if ushaped:
            middle = server.forward(a)
            predictions[name] = device.head_predictions(middle)
            grads[name], losses[name] = device.head_step(0, middle)
        else:
            predictions[name] = server.infer(a, predictions=True)
            grads[name], losses[name] = server.loss_step(a, y)

    # Assert: doubling is exact in floating point; argmin differs from argmax
    assert losses["other"] == 2 * losses["default"]
    np.testing.assert_array_equal(grads["other"], 2 * grads["default"])
    assert not np.array_equal(predictions["other"], predictions["default"])
    assert predictions["other"].shape == predictions["default"].shape == (8,)


def test_a_local_loss_step_trains_front_and_head_on_the_devices_own_loss() -> None:
    # Prepare: the same front and head, one stepped by the device, one by hand
    task = get_task("digits-cnn")
    data = task.load_client_data(
        "digits", PartitionSpec("iid", 1, 0), 0, Path("."), False
    ).train
    torch.manual_seed(0)
    model = task.build_model()
    assert isinstance(model, SplitModel)
    schedule = batch_schedule(len(data), 16, 1, seed=3)
    x = task.preprocess(torch.from_numpy(data.features[schedule[0]]))
    head = auxiliary_head(model.front, x[:1], data.num_classes)
    reference_front, reference_head = copy.deepcopy(model.front), copy.deepcopy(head)
    device = DeviceSide(
        task, model.front, make_optimizer(model.front, 0.05, 0.9), data, schedule
    )
    aux_optimizer = make_optimizer(head, 0.05, 0.9)

    # Execute
    smashed, labels, loss = device.local_loss_step(0, head, aux_optimizer)

    # Assert: smashed data from before the update, the loss of the head on it,
    # and front and head moved by exactly the local loss's gradient
    expected = reference_front(x)
    np.testing.assert_array_equal(smashed, expected.detach().numpy())
    np.testing.assert_array_equal(labels, data.labels[schedule[0]])
    reference_loss = task.loss(reference_head(expected), torch.from_numpy(labels))
    assert loss == pytest.approx(float(reference_loss.detach()), abs=1e-6)
    both = [*reference_front.parameters(), *reference_head.parameters()]
    optimizer = torch.optim.SGD(both, lr=0.05, momentum=0.9)
    reference_loss.backward()
    optimizer.step()
    _assert_same(model.front, reference_front)
    _assert_same(head, reference_head)
    assert set(auxiliary_state(head)) == {"aux.1.weight", "aux.1.bias"}
