"""Split-learning compute on either side of the cut (no flwr import).

Device side: ``front`` (and, U-shaped, ``head``); server side: ``back`` (or, U-shaped,
``middle``). The device never keeps an autograd graph between messages: to apply
the gradient of step t it recomputes ``front(x_t)`` with the weights that produced
the activations it sent (they have not changed since), which makes the protocol
exact: one client reproduces centralised training of the unsplit model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from edgecloud.data.arrays import LabeledArrays
from edgecloud.tasks.base import SplitModel, Task, load_numpy_state, state_to_numpy
from edgecloud.types import NDArray

# Keys of local-loss SplitFed's auxiliary head in a device / global state.
AUX_PREFIX = "aux."

# The task hooks the server side needs (Task.loss, Task.predict): injected by
# TaskSplitOps.server_side so that the cloud part computes the task's own loss.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PredictFn = Callable[[torch.Tensor], torch.Tensor]


def ushaped_parts(model: SplitModel) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(front, middle, head): U-shaped keeps ``back``'s last layer on the device."""
    back = model.back
    if not isinstance(back, nn.Sequential) or len(back) < 2:
        raise TypeError(
            "U-shaped split needs the cloud part to be an nn.Sequential of at least "
            f"two layers; got {type(back).__name__}"
        )
    return model.front, back[:-1], back[-1:]


def batch_schedule(
    num_examples: int, batch_size: int, epochs: int, seed: int
) -> list[npt.NDArray[np.int64]]:
    """Row indices of every optimizer step of one round (epochs x batches), seeded.

    The client and the exactness test compute the same schedule, so both see the
    same batches in the same order.
    """
    generator = torch.Generator().manual_seed(seed)
    steps: list[npt.NDArray[np.int64]] = []
    for _ in range(epochs):
        order = torch.randperm(num_examples, generator=generator).numpy()
        steps.extend(
            order[i : i + batch_size] for i in range(0, num_examples, batch_size)
        )
    return [np.asarray(s, dtype=np.int64) for s in steps]


def make_optimizer(
    module: nn.Module, lr: float, momentum: float
) -> torch.optim.Optimizer:
    """The SGD optimizer every part uses (same as local FL training)."""
    return torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum)


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, NDArray]:
    """SGD momentum buffers as NumPy arrays keyed by parameter index."""
    state = optimizer.state_dict()["state"]
    return {
        str(index): entry["momentum_buffer"].detach().cpu().numpy().copy()
        for index, entry in state.items()
        if entry.get("momentum_buffer") is not None
    }


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, buffers: dict[str, NDArray]
) -> None:
    """Inverse of :func:`optimizer_state`."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key, value in buffers.items():
        index = int(key)
        if not 0 <= index < len(params) or tuple(params[index].shape) != value.shape:
            raise ValueError(f"optimizer buffer {key} does not fit the model")
        optimizer.state[params[index]]["momentum_buffer"] = torch.from_numpy(
            value.copy()
        )


@contextlib.contextmanager
def _frozen_batchnorm_statistics(module: nn.Module) -> Iterator[None]:
    """Train-mode BatchNorm (batch statistics) without touching running stats."""
    norms = [
        m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    saved = [
        (
            m.momentum,
            None if m.num_batches_tracked is None else m.num_batches_tracked.clone(),
        )
        for m in norms
    ]
    for norm in norms:
        norm.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for norm, (momentum, tracked) in zip(norms, saved, strict=True):
            norm.momentum = momentum
            if tracked is not None and norm.num_batches_tracked is not None:
                norm.num_batches_tracked.copy_(tracked)


@dataclass
class DeviceSide:
    """A client's part(s) of the model, its optimizer(s) and its local data."""

    task: Task
    front: nn.Module
    front_optimizer: torch.optim.Optimizer
    data: LabeledArrays
    schedule: list[npt.NDArray[np.int64]]
    head: nn.Module | None = None
    head_optimizer: torch.optim.Optimizer | None = None

    def inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of optimizer step ``step`` of this round."""
        rows = self.schedule[step]
        features = torch.from_numpy(np.ascontiguousarray(self.data.features[rows]))
        return self.task.preprocess(features), torch.from_numpy(self.data.labels[rows])

    @torch.no_grad()
    def activations(self, step: int) -> tuple[NDArray, NDArray]:
        """Smashed data ``front(x_step)`` and the labels of that step."""
        self.front.train()
        x, y = self.inputs(step)
        return self.front(x).numpy(), y.numpy()

    @torch.no_grad()
    def inference_activations(self, data: LabeledArrays) -> NDArray:
        """Split inference: ``front(x)`` of every row of ``data`` in eval mode."""
        self.front.eval()
        x = self.task.preprocess(torch.from_numpy(np.ascontiguousarray(data.features)))
        out: NDArray = self.front(x).numpy()
        return out

    @torch.no_grad()
    def head_predictions(self, middle_out: NDArray) -> NDArray:
        """Split inference, U-shaped: the task's predictions from the middle output."""
        if self.head is None:
            raise ValueError("this device side has no head (not a U-shaped split)")
        self.head.eval()
        out: NDArray = self.task.predict(
            self.head(torch.from_numpy(middle_out))
        ).numpy()
        return out

    def apply_gradient(self, step: int, grad: NDArray) -> None:
        """Recompute ``front(x_step)``, backpropagate ``grad`` and take one step.

        BatchNorm running statistics were already updated when the activations
        were first computed; the recomputation must not update them a second time.
        """
        self.front.train()
        x, _ = self.inputs(step)
        with _frozen_batchnorm_statistics(self.front):
            out = self.front(x)
        if tuple(out.shape) != grad.shape:
            raise ValueError(
                f"gradient shape {grad.shape}; expected {tuple(out.shape)}"
            )
        self.front_optimizer.zero_grad()
        torch.autograd.backward([out], [torch.from_numpy(grad)])
        self.front_optimizer.step()

    def head_step(self, step: int, middle_out: NDArray) -> tuple[NDArray, float]:
        """U-shaped: loss on the device; return d loss / d middle output, loss."""
        if self.head is None or self.head_optimizer is None:
            raise ValueError("this device side has no head (not a U-shaped split)")
        self.head.train()
        _, y = self.inputs(step)
        if middle_out.shape[0] != len(y):
            raise ValueError(
                f"middle output has {middle_out.shape[0]} rows; expected {len(y)}"
            )
        m = torch.from_numpy(middle_out).requires_grad_(True)
        loss = self.task.loss(self.head(m), y)
        self.head_optimizer.zero_grad()
        torch.autograd.backward([loss])
        self.head_optimizer.step()
        assert m.grad is not None
        return m.grad.numpy(), float(loss.detach())

    def local_loss_step(
        self, step: int, aux: nn.Module, aux_optimizer: torch.optim.Optimizer
    ) -> tuple[NDArray, NDArray, float]:
        """Local-loss SplitFed: train the front on the device's own loss.

        Han et al. 2021, "Accelerating Federated Learning with Split Learning on
        Locally Generated Losses": a small auxiliary head on the cut gives the
        device a loss of its own, so it never waits for the server's gradient.
        Returns the smashed data of this step (as the forward pass computed it,
        before the update), its labels and the local loss.
        """
        self.front.train()
        aux.train()
        x, y = self.inputs(step)
        out = self.front(x)
        loss = self.task.loss(aux(out), y)
        self.front_optimizer.zero_grad()
        aux_optimizer.zero_grad()
        torch.autograd.backward([loss])
        self.front_optimizer.step()
        aux_optimizer.step()
        return out.detach().numpy(), y.numpy(), float(loss.detach())


@dataclass
class ServerSide:
    """The cloud part of one model copy and its optimizer.

    ``module`` is a view into ``owner``, the full model, whose state-dict keys are
    the ones the strategy aggregates. ``loss_fn`` and ``predict_fn`` are the task's
    :meth:`~edgecloud.tasks.base.Task.loss` and
    :meth:`~edgecloud.tasks.base.Task.predict`.
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    owner: nn.Module
    loss_fn: LossFn = field(kw_only=True)
    predict_fn: PredictFn = field(kw_only=True)

    def full_state(self) -> dict[str, NDArray]:
        """The owner model's state (only the cloud keys are current)."""
        return state_to_numpy(self.owner)

    def load_full_state(self, state: dict[str, NDArray]) -> None:
        """Load a full-model state into the owner (optimizer state is kept)."""
        load_numpy_state(self.owner, state)

    def loss_step(self, activations: NDArray, labels: NDArray) -> tuple[NDArray, float]:
        """Split / SplitFed: the task's loss on the server; return d loss / d input."""
        self.module.train()
        a = torch.from_numpy(activations).requires_grad_(True)
        loss = self.loss_fn(self.module(a), torch.from_numpy(labels))
        self.optimizer.zero_grad()
        torch.autograd.backward([loss])
        self.optimizer.step()
        assert a.grad is not None
        return a.grad.numpy(), float(loss.detach())

    @torch.no_grad()
    def infer(self, activations: NDArray, predictions: bool) -> NDArray:
        """Split inference (eval mode): the task's predictions, or U-shaped outputs."""
        self.module.eval()
        out = self.module(torch.from_numpy(activations))
        result: NDArray = self.predict_fn(out).numpy() if predictions else out.numpy()
        return result

    @torch.no_grad()
    def forward(self, activations: NDArray) -> NDArray:
        """U-shaped: the middle's output for the device head."""
        self.module.train()
        out: NDArray = self.module(torch.from_numpy(activations)).numpy()
        return out

    def backward_step(self, activations: NDArray, grad_out: NDArray) -> NDArray:
        """U-shaped: recompute the middle, backpropagate the head's gradient, step."""
        self.module.train()
        a = torch.from_numpy(activations).requires_grad_(True)
        with _frozen_batchnorm_statistics(self.module):
            out = self.module(a)
        if tuple(out.shape) != grad_out.shape:
            raise ValueError(
                f"gradient shape {grad_out.shape}; expected {tuple(out.shape)}"
            )
        self.optimizer.zero_grad()
        torch.autograd.backward([out], [torch.from_numpy(grad_out)])
        self.optimizer.step()
        assert a.grad is not None
        return a.grad.numpy()


def device_keys(model: SplitModel, ushaped: bool) -> list[str]:
    """Keys of ``model.state_dict()`` that live on the device."""
    keys = [k for k in model.state_dict() if k.startswith("front.")]
    if ushaped:
        last = f"back.{len(model.back) - 1}."  # type: ignore[arg-type]
        keys += [k for k in model.state_dict() if k.startswith(last)]
    return keys


def device_modules(
    model: SplitModel, ushaped: bool
) -> tuple[nn.Module, nn.Module | None]:
    """(front, head or None): the device's modules, views into ``model``."""
    if not ushaped:
        return model.front, None
    front, _, head = ushaped_parts(model)
    return front, head


def auxiliary_head(
    front: nn.Module, example: torch.Tensor, num_classes: int
) -> nn.Module:
    """Local-loss SplitFed's device head on the cut: flatten, one linear layer.

    ``example`` is one preprocessed input ``(1, ...)``; the head's width follows the
    front's output for it. Seed torch first: the server builds the initial head.
    """
    with torch.no_grad():
        width = int(front(example).numel())
    return nn.Sequential(nn.Flatten(), nn.Linear(width, num_classes))


def auxiliary_state(head: nn.Module) -> dict[str, NDArray]:
    """An auxiliary head's weights, keyed ``aux.*`` beside the model's own."""
    return {AUX_PREFIX + k: v for k, v in state_to_numpy(head).items()}


def load_auxiliary_state(head: nn.Module, state: dict[str, NDArray]) -> None:
    """Load the ``aux.*`` entries of ``state`` into ``head`` (strict)."""
    load_numpy_state(
        head,
        {
            k.removeprefix(AUX_PREFIX): v
            for k, v in state.items()
            if k.startswith(AUX_PREFIX)
        },
    )


def without_auxiliary(state: dict[str, NDArray]) -> dict[str, NDArray]:
    """``state`` without the auxiliary head's entries."""
    return {k: v for k, v in state.items() if not k.startswith(AUX_PREFIX)}


def server_module(model: SplitModel, ushaped: bool) -> nn.Module:
    """The cloud's module, a view into ``model``."""
    return ushaped_parts(model)[1] if ushaped else model.back


class TaskSplitOps:
    """What a split-learning strategy needs from a task, without importing it.

    Holds one full model on the server; the cloud part(s) are views into it or
    into copies of it (SplitFed-v1 keeps one copy per client).
    """

    def __init__(
        self,
        task: Task,
        lr: float,
        momentum: float,
        test_set: LabeledArrays,
        batch_size: int,
    ) -> None:
        self.task, self.lr, self.momentum = task, lr, momentum
        self.test_set, self.batch_size = test_set, batch_size

    def new_model(self, state: dict[str, NDArray] | None = None) -> SplitModel:
        """A full model, loaded with ``state`` if given (auxiliary keys ignored)."""
        model = self.task.build_model()
        if not isinstance(model, SplitModel):
            raise TypeError(f"task {self.task.name!r} declares no cut point")
        if state is not None:
            load_numpy_state(model, without_auxiliary(state))
        return model

    def auxiliary_state(self) -> dict[str, NDArray]:
        """A fresh auxiliary head for local-loss SplitFed, keyed ``aux.*``."""
        model = self.new_model()
        example = self.task.preprocess(
            torch.from_numpy(np.ascontiguousarray(self.test_set.features[:1]))
        )
        head = auxiliary_head(model.front, example, self.test_set.num_classes)
        return auxiliary_state(head)

    def smashed_shape(self) -> tuple[int, ...]:
        """Shape of one example's smashed data (the front's output), batch left out."""
        model = self.new_model()
        example = self.task.preprocess(
            torch.from_numpy(np.ascontiguousarray(self.test_set.features[:1]))
        )
        with torch.no_grad():
            return tuple(model.front.eval()(example).shape[1:])

    @property
    def num_classes(self) -> int:
        """Labels are 0 .. num_classes - 1."""
        return self.test_set.num_classes

    def device_keys(self, ushaped: bool) -> list[str]:
        """Full-state keys of the device part(s)."""
        return device_keys(self.new_model(), ushaped)

    def server_side(self, model: SplitModel, ushaped: bool) -> ServerSide:
        """The cloud part of ``model`` with a fresh optimizer and the task's hooks."""
        module = server_module(model, ushaped)
        return ServerSide(
            module,
            make_optimizer(module, self.lr, self.momentum),
            model,
            loss_fn=self.task.loss,
            predict_fn=self.task.predict,
        )

    def evaluate(self, state: dict[str, NDArray]) -> dict[str, float]:
        """Loss and accuracy of the assembled model on the held-out test set."""
        result = self.task.evaluate(
            self.new_model(state), self.test_set, self.batch_size
        )
        return {"loss": result.loss, "accuracy": result.accuracy}
