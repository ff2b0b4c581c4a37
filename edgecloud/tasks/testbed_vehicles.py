"""testbed-vehicles: count vehicles in camera frames of the synthetic testbed.

Federated experiments with natural non-IID domains: each client sees whole cameras
(partitioning ``by-camera`` or node config ``cameras``), each camera with its own
background, viewpoint, noise and day/night mix.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from edgecloud.data.arrays import LabeledArrays
from edgecloud.data.testbed.config import preset
from edgecloud.data.testbed.samples import COUNT_CLASSES, FrameSamples, load_samples
from edgecloud.models.frame_cnn import SPECS, FrameCnn
from edgecloud.tasks.base import SplitModel
from edgecloud.tasks.camera_task import CameraTask

# Dataset name -> (testbed preset, use every k-th frame). The testbed is generated
# into <data-dir>/<dataset>/ on first use (deterministic and offline).
TESTBED_DATASETS: dict[str, tuple[str, int]] = {
    "testbed-tiny": ("tiny", 2),
    "testbed-small": ("small", 5),
    "testbed": ("default", 5),
}
# Pixel statistics of day and night frames together (pixels in [0, 1]).
_MEAN, _STD = 0.42, 0.25


class TestbedVehicles(CameraTask):
    """The vehicle counter's CNN as a split model: 3 conv stages on the device.

    Input ``(B, 3, 120, 160)`` uint8 frames; smashed data ``(B, 48, 15, 20)``; output
    ``(B, 10)`` logits over counts 0..8 and "9 or more".
    """

    __test__: ClassVar[bool] = False  # not a pytest test class despite the name
    name: ClassVar[str] = "testbed-vehicles"
    datasets: ClassVar[tuple[str, ...]] = tuple(TESTBED_DATASETS)
    splittable: ClassVar[bool] = True

    def build_model(self) -> SplitModel:
        """The ``vehicle-counter`` black-box architecture, cut after stage 3."""
        net = FrameCnn(SPECS["vehicle-counter"])
        front = net.features[:3]  # (B, 3, 120, 160) -> (B, 48, 15, 20)
        back = nn.Sequential(*net.features[3:], *net.head)  # -> (B, 10)
        return SplitModel(front, back)

    def preprocess(self, features: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> standardised float32."""
        return (features.float() / 255.0 - _MEAN) / _STD

    def load_dataset(
        self, dataset: str, train: bool, data_dir: Path, download: bool
    ) -> LabeledArrays:
        """Training cameras (``train``) or the held-out cameras of the testbed."""
        samples = _samples(dataset, data_dir.expanduser().absolute())
        cameras = _cameras(dataset, train)
        return _as_arrays(samples.select(np.isin(samples.camera, cameras)))

    def camera_ids(
        self, dataset: str, data_dir: Path, download: bool
    ) -> npt.NDArray[np.int64]:
        """Camera id of every row of the training set."""
        samples = _samples(dataset, data_dir.expanduser().absolute())
        return samples.camera[np.isin(samples.camera, _cameras(dataset, True))]

    def load_camera_data(
        self, dataset: str, cameras: tuple[int, ...], data_dir: Path, download: bool
    ) -> LabeledArrays:
        """Every sampled frame of ``cameras`` (any camera of the testbed)."""
        samples = _samples(dataset, data_dir.expanduser().absolute())
        known = sorted(set(samples.camera.tolist()))
        unknown = sorted(set(cameras) - set(known))
        if unknown:
            raise ValueError(
                f"node config 'cameras' names {unknown}, not in testbed {dataset!r}; "
                f"expected ids among {known}"
            )
        return _as_arrays(samples.select(np.isin(samples.camera, cameras)))


def _cameras(dataset: str, train: bool) -> tuple[int, ...]:
    cfg = preset(TESTBED_DATASETS[dataset][0])
    return cfg.train_cameras if train else cfg.test_cameras


@functools.lru_cache(maxsize=2)
def _samples(dataset: str, data_dir: Path) -> FrameSamples:
    if dataset not in TESTBED_DATASETS:
        raise ValueError(
            f"dataset {dataset!r} unknown; expected one of {sorted(TESTBED_DATASETS)}"
        )
    # Imported here: generating and reading the testbed needs PyAV, which only
    # processes that load testbed data should import.
    from edgecloud.data.testbed.generate import ensure_testbed

    name, every = TESTBED_DATASETS[dataset]
    cfg = preset(name)
    testbed = ensure_testbed(cfg, data_dir / dataset)
    return load_samples(testbed, range(cfg.num_cameras), every)


def _as_arrays(samples: FrameSamples) -> LabeledArrays:
    return LabeledArrays(samples.images, samples.target("vehicles"), COUNT_CLASSES)
