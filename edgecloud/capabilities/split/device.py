"""The device's part of a split-learning round, whatever carries its steps.

Over Flower messages a :class:`DeviceRound` is rebuilt from ``context.state`` for
every step; over a streamed session it lives for the whole round. Either way one
:meth:`DeviceRound.step` is one step of the protocol (see ``server.py``), and
nothing is persisted until the caller saves :meth:`DeviceRound.state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from edgecloud.capabilities.split import keys as k
from edgecloud.capabilities.split.config import SplitConfig
from edgecloud.channel import ChannelError, weights_digest
from edgecloud.settings import NodeConfig, RunSettings
from edgecloud.tasks import SplitModel, load_numpy_state, state_to_numpy
from edgecloud.tasks.split_steps import (
    AUX_PREFIX,
    DeviceSide,
    auxiliary_head,
    auxiliary_state,
    batch_schedule,
    device_keys,
    device_modules,
    load_auxiliary_state,
    load_optimizer_state,
    make_optimizer,
    optimizer_state,
    without_auxiliary,
)
from edgecloud.types import NDArray
from edgecloud.workflow.client_data import load_node_data
from edgecloud.workflow.keys import NUM_EXAMPLES, PARTITION_ID, TRAIN_LOSS
from edgecloud.workflow.seeds import client_round_seed

USHAPED, LOCAL_LOSS = "split-ushaped", "splitfed-local-loss"


@dataclass
class DeviceState:
    """What the device keeps between messages and rounds (in ``context.state``)."""

    weights: dict[str, NDArray]  # its part(s) of the model (+ ``aux.*``)
    optimizer: dict[str, NDArray]  # momentum buffers: front.i, head.i, aux.i
    loss_sum: float = 0.0
    loss_count: float = 0.0


class DeviceRound:
    """One client's round of split learning on the device.

    Parameters
    ----------
    settings : RunSettings
        The run's common settings and split section.
    node : NodeConfig
        This node's partition (or cameras).
    mode : str
        The split mode of the round (from the server's control).
    server_round : int
        The round, for the batch order.
    state : DeviceState
        Device weights (sent by the server or kept locally), optimizer buffers and
        the round's loss so far.
    """

    def __init__(
        self,
        settings: RunSettings[SplitConfig],
        node: NodeConfig,
        mode: str,
        server_round: int,
        state: DeviceState,
    ) -> None:
        common, lr = settings.common, settings.section.lr
        self.node, self.mode = node, mode
        self.ushaped = mode == USHAPED
        task = common.task_plugin
        data = load_node_data(common, node).train
        self.model = cast(SplitModel, task.build_model())
        self.keys = device_keys(self.model, self.ushaped)
        self.aux: torch.nn.Module | None = None
        if mode == LOCAL_LOSS:
            example = task.preprocess(torch.from_numpy(data.features[:1]))
            self.aux = auxiliary_head(self.model.front, example, data.num_classes)
            self.keys += list(auxiliary_state(self.aux))
        _check_keys(state.weights, self.keys)
        load_numpy_state(
            self.model,
            {**state_to_numpy(self.model), **without_auxiliary(state.weights)},
        )
        front, head = device_modules(self.model, self.ushaped)
        self.device = DeviceSide(
            task,
            front,
            make_optimizer(front, lr, common.momentum),
            data,
            batch_schedule(
                len(data),
                common.batch_size,
                common.local_epochs,
                seed=client_round_seed(common.seed, server_round, node.partition_id),
            ),
            head,
            make_optimizer(head, lr, common.momentum) if head is not None else None,
        )
        self.aux_optimizer = None
        if self.aux is not None:
            load_auxiliary_state(self.aux, state.weights)
            self.aux_optimizer = make_optimizer(self.aux, lr, common.momentum)
        self._restore_optimizers(state.optimizer)
        self.loss_sum, self.loss_count = state.loss_sum, state.loss_count

    @property
    def num_steps(self) -> int:
        """Optimizer steps of the round."""
        return len(self.device.schedule)

    @property
    def num_examples(self) -> int:
        """Training examples of this node."""
        return len(self.device.data)

    # -------------------------------------------------------------- a step
    def step(
        self, control: Mapping[str, Any], tensors: Mapping[str, NDArray]
    ) -> tuple[dict[str, NDArray], dict[str, Any]]:
        """One step of the protocol: (tensors, control values) of the reply.

        Applies ``grad`` (of ``grad-step``), runs the U-shaped head on ``middle``,
        sends the activations of ``want-step``; at ``start`` reports the round's
        steps; at ``final`` adds the digest of the trained weights.
        """
        if self.mode == LOCAL_LOSS:
            return self._local_round()
        out: dict[str, NDArray] = {}
        reply: dict[str, Any] = {}
        if k.GRAD in tensors:
            self.device.apply_gradient(_int(control, k.GRAD_STEP), tensors[k.GRAD])
        if k.MIDDLE in tensors:
            out[k.GRAD_MIDDLE], loss = self.device.head_step(
                _int(control, k.HEAD_STEP), tensors[k.MIDDLE]
            )
            self.loss_sum += loss
            self.loss_count += 1
        want = _int(control, k.WANT_STEP, -1)
        if want >= 0:
            out[k.ACTIVATIONS], labels = self.device.activations(want)
            if not self.ushaped:  # U-shaped: labels never leave the device
                out[k.LABELS] = labels
        if control.get(k.START, False):
            reply[k.NUM_STEPS] = self.num_steps
        if control.get(k.FINAL, False):
            out[k.FRONT_DIGEST] = weights_digest(self.trained())
        return out, reply

    def _local_round(self) -> tuple[dict[str, NDArray], dict[str, Any]]:
        """Local-loss SplitFed: the whole round in one step, without gradients.

        Every batch trains the front and the auxiliary head on the device's own
        loss; the smashed data and labels of every batch go up at once (stacked,
        with the batch sizes) for the server to train its part on.
        """
        assert self.aux is not None and self.aux_optimizer is not None
        smashed, labels, sizes = [], [], []
        for step in range(self.num_steps):
            a, y, loss = self.device.local_loss_step(step, self.aux, self.aux_optimizer)
            smashed.append(a)
            labels.append(y)
            sizes.append(len(y))
            self.loss_sum += loss
            self.loss_count += 1
        out = {
            k.ACTIVATIONS: np.concatenate(smashed),
            k.LABELS: np.concatenate(labels),
            k.BATCH_SIZES: np.asarray(sizes, dtype=np.int64),
            k.FRONT_DIGEST: weights_digest(self.trained()),
        }
        return out, {k.NUM_STEPS: self.num_steps}

    # ------------------------------------------------------------ results
    def trained(self) -> dict[str, NDArray]:
        """The device's weights now (its keys of the model, plus ``aux.*``)."""
        state = state_to_numpy(self.model)
        if self.aux is not None:
            state.update(auxiliary_state(self.aux))
        return {key: np.ascontiguousarray(state[key]) for key in self.keys}

    def metrics(self) -> dict[str, Any]:
        """What the final reply reports."""
        metrics: dict[str, Any] = {
            NUM_EXAMPLES: self.num_examples,
            PARTITION_ID: self.node.partition_id,
        }
        if self.loss_count:
            metrics[TRAIN_LOSS] = self.loss_sum / self.loss_count
        return metrics

    def state(self) -> DeviceState:
        """Everything to persist after a step (or the round) fully succeeded."""
        buffers = {
            f"front.{i}": v
            for i, v in optimizer_state(self.device.front_optimizer).items()
        }
        for prefix, optimizer in (
            ("head.", self.device.head_optimizer),
            ("aux.", self.aux_optimizer),
        ):
            if optimizer is not None:
                buffers |= {
                    prefix + i: v for i, v in optimizer_state(optimizer).items()
                }
        return DeviceState(self.trained(), buffers, self.loss_sum, self.loss_count)

    def _restore_optimizers(self, buffers: Mapping[str, NDArray]) -> None:
        for prefix, optimizer in (
            ("front.", self.device.front_optimizer),
            ("head.", self.device.head_optimizer),
            ("aux.", self.aux_optimizer),
        ):
            if optimizer is not None:
                own = {
                    key.removeprefix(prefix): v
                    for key, v in buffers.items()
                    if key.startswith(prefix)
                }
                load_optimizer_state(optimizer, own)


def inference_step(
    settings: RunSettings[SplitConfig],
    node: NodeConfig,
    mode: str,
    weights: Mapping[str, NDArray],
    tensors: Mapping[str, NDArray],
    start: bool,
) -> dict[str, NDArray]:
    """Split inference with the trained model, on the validation split.

    ``start``: the smashed data of every validation example. Then, given the
    server's predictions (U-shaped: the middle's output, which the device head
    turns into predictions), the number of correct ones and the count.
    """
    ushaped = mode == USHAPED
    task = settings.common.task_plugin
    data = load_node_data(settings.common, node).val
    model = cast(SplitModel, task.build_model())
    keys = device_keys(model, ushaped)
    _check_keys(
        {n: v for n, v in weights.items() if not n.startswith(AUX_PREFIX)}, keys
    )
    load_numpy_state(
        model, {**state_to_numpy(model), **without_auxiliary(dict(weights))}
    )
    front, head = device_modules(model, ushaped)
    device = DeviceSide(task, front, make_optimizer(front, 0.0, 0.0), data, [], head)
    if start:
        return {k.ACTIVATIONS: device.inference_activations(data)}
    predicted = (
        device.head_predictions(tensors[k.MIDDLE])
        if ushaped
        else tensors[k.PREDICTIONS]
    )
    if predicted.shape != data.labels.shape:
        raise ChannelError(f"{predicted.shape} predictions for {len(data)} examples")
    return {
        k.CORRECT: np.array([int((predicted == data.labels).sum())], np.int64),
        k.COUNT: np.array([len(data)], dtype=np.int64),
    }


def _int(control: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = control.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"split control '{key}' is {value!r}; expected an int")
    return value


def _check_keys(weights: Mapping[str, NDArray], keys: list[str]) -> None:
    if set(weights) != set(keys):
        raise ValueError(
            f"device weights have {len(weights)} keys; expected {len(keys)}"
        )
