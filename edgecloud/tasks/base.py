"""The task plug-in interface: model (and its split), data, loss, train and evaluate.

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
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edgecloud.data.arrays import LabeledArrays, stratified_split
from edgecloud.data.partitioning import (
    PartitionSpec,
    label_histogram,
    partition_by_group,
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


class Task(ABC):
    """A learning task that clients and the server plug in by name.

    Subclasses name their model (``build_model``; a :class:`SplitModel` declares the
    cut point for split learning), load a dataset, and normalise batches. Training
    and evaluation of a classifier are shared here.
    """

    name: ClassVar[str]
    datasets: ClassVar[tuple[str, ...]]
    # True if build_model() returns a SplitModel (a cut point for split learning).
    splittable: ClassVar[bool] = False
    # True if the datasets know each example's camera (partitioning "by-camera",
    # node config "cameras"); such tasks implement camera_ids().
    has_cameras: ClassVar[bool] = False

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (seed ``torch`` first for determinism)."""

    @abstractmethod
    def load_dataset(
        self, dataset: str, train: bool, data_dir: Path, download: bool
    ) -> LabeledArrays:
        """The full training set (``train=True``) or the held-out test set."""

    def camera_ids(
        self, dataset: str, data_dir: Path, download: bool
    ) -> npt.NDArray[np.int64]:
        """Camera id of every example of the training set (``has_cameras`` tasks)."""
        raise ValueError(
            f"task {self.name!r} has no cameras; expected a testbed task for "
            "partitioning 'by-camera' or node config 'cameras'"
        )

    def load_camera_data(
        self, dataset: str, cameras: tuple[int, ...], data_dir: Path, download: bool
    ) -> LabeledArrays:
        """Every example (training and held-out) of ``cameras`` (camera tasks)."""
        raise ValueError(
            f"task {self.name!r} has no cameras; expected a testbed task for node "
            f"config 'cameras' (got {list(cameras)})"
        )

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

    # ------------------------------------------------------------------ data
    def load_client_data(
        self,
        dataset: str,
        spec: PartitionSpec,
        partition_id: int,
        data_dir: Path,
        download: bool,
        cameras: tuple[int, ...] | None = None,
    ) -> ClientData:
        """Partition ``partition_id`` of ``spec``, split 80/20 into train/validation.

        ``cameras`` (a node's own camera set, testbed tasks only) replaces the
        partitioning: the node trains on exactly those cameras.
        """
        if cameras is not None:
            part = self.load_camera_data(dataset, cameras, data_dir, download)
            return self._split_client(part, spec.seed, partition_id)
        if not 0 <= partition_id < spec.num_partitions:
            raise ValueError(
                f"partition-id is {partition_id}; expected an integer in "
                f"[0, {spec.num_partitions}) for num-partitions={spec.num_partitions}"
            )
        full = self.load_dataset(dataset, True, data_dir, download)
        rows = self._partitions(dataset, spec, data_dir, download)[partition_id]
        return self._split_client(full.subset(rows), spec.seed, partition_id)

    @staticmethod
    def _split_client(part: LabeledArrays, seed: int, partition_id: int) -> ClientData:
        train_idx, val_idx = stratified_split(
            part.labels, VAL_FRACTION, seed + partition_id
        )
        return ClientData(partition_id, part.subset(train_idx), part.subset(val_idx))

    @functools.lru_cache(maxsize=4)  # noqa: B019 -- tasks are module-level singletons
    def _partitions(
        self, dataset: str, spec: PartitionSpec, data_dir: Path, download: bool
    ) -> list[npt.NDArray[np.int64]]:
        if spec.method == "by-camera":
            return partition_by_group(
                self.camera_ids(dataset, data_dir, download), spec
            )
        labels = self.load_dataset(dataset, True, data_dir, download).labels
        return partition_indices(labels, spec)

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
        criterion = nn.CrossEntropyLoss()
        total_loss, seen = 0.0, 0
        for _ in range(settings.epochs):
            for features, labels in loader:
                optimizer.zero_grad()
                loss = criterion(model(self.preprocess(features)), labels)
                total_loss += float(loss.detach()) * len(labels)
                seen += len(labels)
                if settings.proximal_mu > 0:
                    # FedProx: mu/2 * ||w - w_global||^2 keeps drift bounded
                    prox = sum(
                        torch.sum((p - a) ** 2)
                        for p, a in zip(model.parameters(), anchor, strict=True)
                    )
                    loss = loss + settings.proximal_mu / 2 * prox
                loss.backward()
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
        """Mean cross-entropy and accuracy of ``model`` on ``data``."""
        model.eval()
        criterion = nn.CrossEntropyLoss(reduction="sum")
        total_loss, correct = 0.0, 0
        for features, labels in self._loader(data, batch_size, shuffle=False, seed=0):
            logits = model(self.preprocess(features))
            total_loss += float(criterion(logits, labels))
            correct += int((logits.argmax(dim=1) == labels).sum())
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
