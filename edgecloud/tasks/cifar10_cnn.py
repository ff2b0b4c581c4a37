"""cifar10-cnn: the split-inference tutorial's CNN on CIFAR-10 (2 conv | 2 FC)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from edgecloud.data.arrays import LabeledArrays
from edgecloud.data.cifar10 import load_cifar10
from edgecloud.tasks.base import SplitModel, Task


class Cifar10Cnn(Task):
    """The split-inference tutorial's terminal/cloud network.

    Device part: two (conv 3x3, ReLU, max-pool 2) blocks, ``(B, 3, 32, 32)`` ->
    ``(B, 8192)``. Cloud part: FC 8192->256, ReLU, dropout 0.5, FC 256->10.
    Note the cut carries 8192 float32 = 32 KiB per image, ten times the 3 KiB
    uint8 image itself: the tutorial's "features are 1/10 of the input" is wrong.
    """

    name: ClassVar[str] = "cifar10-cnn"
    datasets: ClassVar[tuple[str, ...]] = ("cifar10",)
    splittable: ClassVar[bool] = True

    def build_model(self) -> SplitModel:
        """The tutorial's terminal model (front) and cloud model (back)."""
        front = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1),  # (B, 64, 32, 32)
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),  # (B, 64, 16, 16)
            nn.Conv2d(64, 128, kernel_size=3, stride=1, padding=1),  # (B, 128, 16, 16)
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),  # (B, 128, 8, 8)
            nn.Flatten(),  # (B, 8192)
        )
        back = nn.Sequential(
            nn.Linear(128 * 8 * 8, 256),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(256, 10),  # (B, 10) logits
        )
        return SplitModel(front, back)

    def load_dataset(
        self, dataset: str, train: bool, data_dir: Path, download: bool
    ) -> LabeledArrays:
        """CIFAR-10 via torchvision (downloaded into ``data_dir`` if allowed)."""
        return load_cifar10(data_dir, train, download)

    def preprocess(self, features: torch.Tensor) -> torch.Tensor:
        """Map uint8 pixels to [-1, 1] like the tutorial's Normalize(0.5, 0.5)."""
        # uint8 (B, 3, 32, 32) -> float in [-1, 1]
        return (features.float() / 255.0 - 0.5) / 0.5
