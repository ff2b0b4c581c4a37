"""resnet18-cifar10: torchvision's ResNet-18 (CIFAR stem) cut after ``layer2``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from edgecloud.data.arrays import LabeledArrays
from edgecloud.data.cifar10 import load_cifar10
from edgecloud.tasks.base import SplitModel, Task

# CIFAR-10 channel statistics of the training set (the usual published values).
_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
_STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


class Resnet18Cifar(Task):
    """ResNet-18 from torchvision with the CIFAR stem (3x3 conv, no max-pool).

    Device part: stem + ``layer1`` + ``layer2``, ``(B, 3, 32, 32) -> (B, 128, 16, 16)``
    (32 768 floats = 128 KiB of fp32 smashed data per image, 43x the 3 KiB image).
    Cloud part: ``layer3``, ``layer4``, average pool, FC. The device part holds 0.7 M
    of the 11.2 M parameters.
    """

    name: ClassVar[str] = "resnet18-cifar10"
    datasets: ClassVar[tuple[str, ...]] = ("cifar10",)
    splittable: ClassVar[bool] = True

    def build_model(self) -> SplitModel:
        """ResNet-18 of torchvision (10 classes), CIFAR stem, cut after layer2."""
        # Imported here: torchvision takes ~1 s to import, and every ClientApp
        # process imports the task registry whatever task it runs.
        from torchvision.models import resnet18

        net = resnet18(weights=None, num_classes=10)
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        front = nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1, net.layer2)
        back = nn.Sequential(
            net.layer3,
            net.layer4,
            net.avgpool,
            nn.Flatten(),
            net.fc,  # (B, 10) logits
        )
        return SplitModel(front, back)

    def load_dataset(
        self, dataset: str, train: bool, data_dir: Path, download: bool
    ) -> LabeledArrays:
        """CIFAR-10 via torchvision (downloaded into ``data_dir`` if allowed)."""
        return load_cifar10(data_dir, train, download)

    def preprocess(self, features: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> per-channel standardised floats."""
        return (features.float() / 255.0 - _MEAN) / _STD
