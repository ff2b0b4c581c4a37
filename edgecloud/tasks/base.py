"""The task plug-in interface: model (and its split), data, loss/metric hooks, training.

Tasks never import flwr. The apps turn a task's ``state_dict`` into an ArrayRecord
with :func:`state_to_numpy` / :func:`load_numpy_state`, the one conversion helper.
"""

from __future__ import annotations

import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgecloud.data.arrays import LabeledArrays, stratified_split
from edgecloud.data.partitioning import (
    PartitionSpec,
    label_histogram,
    partition_indices,
)

VAL_FRACTION = 0.2


class SplitModel(nn.Module):
    """A model cut in two: ``front`` runs on the device, ``back`` in the cloud.

    ``forward(x) == back(front(x))``; the tensor crossing the cut is what split
    learning sends over the network ("smashed data").
    """

    def __init__(self, front: nn.Module, back: nn.Module) -> None:
        super().__init__()
        self.front = front
        self.back = back

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``back(front(x))``."""
        out: torch.Tensor = self.back(self.front(x))
        return out


@dataclass(frozen=True)
class TrainSettings:
    """Values local training needs; they come from the run config and the server."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    seed: int
    proximal_mu: float = 0.0
    report_initial_loss: bool = False


@dataclass(frozen=True)
class TrainResult:
    """What one call of :meth:`Task.train` reports."""

    train_loss: float
    num_examples: int
    seconds: float
    initial_loss: float | None = None


@dataclass(frozen=True)
class EvalResult:
    """What one call of :meth:`Task.evaluate` reports."""

    loss: float
    accuracy: float
    num_examples: int


@dataclass(frozen=True)
class ClientData:
    """One client's partition, split into local train and validation parts."""

    partition_id: int
    train: LabeledArrays
    val: LabeledArrays

    @property
    def label_histogram(self) -> list[int]:
        """Per-class counts of the whole partition (train + validation)."""
        labels = np.concatenate([self.train.labels, self.val.labels])
        return label_histogram(labels, self.train.num_classes)


def split_client_data(part: LabeledArrays, seed: int, partition_id: int) -> ClientData:
    """One client's examples, split stratified 80/20 into train and validation.

    The split is seeded with ``seed + partition_id``: every client splits its own
    part differently, and the same run splits it the same way every time.
    """
    train_idx, val_idx = stratified_split(
        part.labels, VAL_FRACTION, seed + partition_id
    )
    return ClientData(partition_id, part.subset(train_idx), part.subset(val_idx))


class Task(ABC):
    """A learning task that clients and the server plug in by name.

    Subclasses name their model (``build_model``; a :class:`SplitModel` declares the
    cut point for split learning), load a dataset, and normalise batches. Training,
    evaluation and split learning go through three hooks, :meth:`loss`,
    :meth:`predict` and :meth:`correct`, whose defaults make a classifier
    (cross-entropy, argmax, accuracy); a task with another objective overrides them.
    """

    name: ClassVar[str]
    datasets: ClassVar[tuple[str, ...]]
    # True if build_model() returns a SplitModel (a cut point for split learning).
    splittable: ClassVar[bool] = False

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (seed ``torch`` first for determinism)."""

    @abstractmethod
    def load_dataset(
        self, dataset: str, train: bool, data_dir: Path, download: bool
    ) -> LabeledArrays:
        """The full training set (``train=True``) or the held-out test set."""

    def preprocess(self, features: torch.Tensor) -> torch.Tensor:
        """Turn a batch of stored features into model inputs (float32)."""
        return features.float()

    def split_parts(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        """The (device-side front, cloud-side back) parts of ``model``."""
        if not isinstance(model, SplitModel):
            raise TypeError(
                f"task {self.name!r} declares no cut point: its model is a "
                f"{type(model).__name__}, expected a SplitModel"
            )
        return model.front, model.back

    # --------------------------------------------------------- loss / metrics
    def loss(
        self,
        outputs: torch.Tensor,
        targets: torch.Tensor,
        reduction: Literal["mean", "sum"] = "mean",
    ) -> torch.Tensor:
        """The loss of a batch: cross-entropy of ``(B, C)`` logits by default.

        Parameters
        ----------
        outputs : torch.Tensor
            Model outputs of the batch, ``(B, ...)``.
        targets : torch.Tensor
            Targets of the batch, ``(B, ...)``.
        reduction : {"mean", "sum"}
            As in ``torch.nn`` losses: the mean over the batch (what training
            minimises) or the sum (evaluation adds batches up exactly; the mean
            times the batch size differs from it in the last bits).

        Returns
        -------
        torch.Tensor
            A scalar.
        """
        return nn.functional.cross_entropy(outputs, targets, reduction=reduction)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Predictions from model outputs: the argmax class of ``(B, C)`` logits."""
        return outputs.argmax(dim=1)

    def correct(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool, true where a prediction counts as right (accuracy = mean)."""
        return predictions == targets

    # ------------------------------------------------------------------ data
    def load_client_data(
        self,
        dataset: str,
        spec: PartitionSpec,
        partition_id: int,
        data_dir: Path,
        download: bool,
    ) -> ClientData:
        """Partition ``partition_id`` of ``spec``, split 80/20 into train/validation."""
        if not 0 <= partition_id < spec.num_partitions:
            raise ValueError(
                f"partition-id is {partition_id}; expected an integer in "
                f"[0, {spec.num_partitions}) for num-partitions={spec.num_partitions}"
            )
        full = self.load_dataset(dataset, True, data_dir, download)
        rows = self._partitions(dataset, spec, data_dir, download)[partition_id]
        return split_client_data(full.subset(rows), spec.seed, partition_id)

    def partition_rows(
        self, dataset: str, spec: PartitionSpec, data_dir: Path, download: bool
    ) -> list[npt.NDArray[np.int64]]:
        """Training-set row indices of every partition of ``spec``.

        The base task partitions by label (IID, Dirichlet, shards); partitioning
        ``by-camera`` needs a :class:`~edgecloud.tasks.camera_task.CameraTask`.
        """
        if spec.method == "by-camera":
            raise ValueError(
                f"partitioning 'by-camera' needs a camera id per example but task "
                f"{self.name!r} has no cameras; expected a camera task (a testbed "
                "task)"
            )
        labels = self.load_dataset(dataset, True, data_dir, download).labels
        return partition_indices(labels, spec)

    @functools.lru_cache(maxsize=4)  # noqa: B019 -- tasks are module-level singletons
    def _partitions(
        self, dataset: str, spec: PartitionSpec, data_dir: Path, download: bool
    ) -> list[npt.NDArray[np.int64]]:
        # Every simulated client of a process asks for the same partitioning.
        return self.partition_rows(dataset, spec, data_dir, download)

    # --------------------------------------------------------- train / eval
    def train(
        self, model: nn.Module, data: LabeledArrays, settings: TrainSettings
    ) -> TrainResult:
        """Local SGD for ``settings.epochs`` epochs; FedProx term if ``proximal_mu``."""
        start = time.perf_counter()
        initial_loss = None
        if settings.report_initial_loss:
            initial_loss = self.evaluate(model, data, settings.batch_size).loss
        model.train()
        optimizer = torch.optim.SGD(
            model.parameters(), lr=settings.lr, momentum=settings.momentum
        )
        anchor = [p.detach().clone() for p in model.parameters()]
        loader = self._loader(
            data, settings.batch_size, shuffle=True, seed=settings.seed
        )
        total_loss, seen = 0.0, 0
        for _ in range(settings.epochs):
            for features, targets in loader:
                optimizer.zero_grad()
                loss = self.loss(model(self.preprocess(features)), targets)
                total_loss += float(loss.detach()) * len(targets)
                seen += len(targets)
                if settings.proximal_mu > 0:
                    # FedProx: mu/2 * ||w - w_global||^2 keeps drift bounded
                    prox = sum(
                        torch.sum((p - a) ** 2)
                        for p, a in zip(model.parameters(), anchor, strict=True)
                    )
                    loss = loss + settings.proximal_mu / 2 * prox
                torch.autograd.backward([loss])
                optimizer.step()
        return TrainResult(
            train_loss=total_loss / max(seen, 1),
            num_examples=len(data),
            seconds=time.perf_counter() - start,
            initial_loss=initial_loss,
        )

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, data: LabeledArrays, batch_size: int
    ) -> EvalResult:
        """Mean :meth:`loss` and fraction :meth:`correct` of ``model`` on ``data``."""
        model.eval()
        total_loss, correct = 0.0, 0
        for features, targets in self._loader(data, batch_size, shuffle=False, seed=0):
            outputs = model(self.preprocess(features))
            total_loss += float(self.loss(outputs, targets, reduction="sum"))
            correct += int(self.correct(self.predict(outputs), targets).sum())
        n = len(data)
        return EvalResult(
            loss=total_loss / n if n else float("nan"),
            accuracy=correct / n if n else float("nan"),
            num_examples=n,
        )

    @staticmethod
    def _loader(
        data: LabeledArrays, batch_size: int, shuffle: bool, seed: int
    ) -> DataLoader[tuple[torch.Tensor, ...]]:
        dataset = TensorDataset(
            torch.from_numpy(np.ascontiguousarray(data.features)),
            torch.from_numpy(data.labels),
        )
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, generator=generator
        )


def state_to_numpy(model: nn.Module) -> dict[str, npt.NDArray[np.generic]]:
    """The model's ``state_dict`` as NumPy arrays (copies), keyed as in torch."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_numpy_state(
    model: nn.Module, state: Mapping[str, npt.NDArray[np.generic]]
) -> None:
    """Load NumPy arrays keyed as in ``model.state_dict()`` (strict: same keys)."""
    model.load_state_dict(
        {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}
    )
