"""Camera tasks: by-camera partitions hold whole cameras, nodes get their own."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pytest
from torch import nn

from edgecloud.data.arrays import LabeledArrays
from edgecloud.data.digits import load_digits
from edgecloud.data.partitioning import PartitionSpec
from edgecloud.tasks import TASKS, CameraTask, get_task
from edgecloud.tasks.digits_cnn import DigitsCnn

NUM_CAMERAS = 4


class _DigitCameras(CameraTask):
    """The digits as if filmed by four cameras: row ``i`` comes from camera i % 4."""

    name: ClassVar[str] = "digit-cameras"
    datasets: ClassVar[tuple[str, ...]] = ("digits",)

    def build_model(self) -> nn.Module:
        return DigitsCnn().build_model()

    def load_dataset(
        self, dataset: str, train: bool, data_dir: Path, download: bool
    ) -> LabeledArrays:
        return load_digits(train)

    def camera_ids(
        self, dataset: str, data_dir: Path, download: bool
    ) -> npt.NDArray[np.int64]:
        return np.arange(len(load_digits(True)), dtype=np.int64) % NUM_CAMERAS

    def load_camera_data(
        self, dataset: str, cameras: tuple[int, ...], data_dir: Path, download: bool
    ) -> LabeledArrays:
        rows = np.isin(self.camera_ids(dataset, data_dir, download), cameras)
        return load_digits(True).subset(np.flatnonzero(rows))


def _cameras_of(data: LabeledArrays) -> set[int]:
    # Rows are unique images: find each one's row in the training set.
    full = load_digits(True)
    flat = full.features.reshape(len(full), -1)
    rows = [
        int(np.flatnonzero((flat == f.reshape(-1)).all(axis=1))[0])
        for f in data.features
    ]
    return {r % NUM_CAMERAS for r in rows}


def test_by_camera_partitions_deal_whole_cameras_round_robin() -> None:
    # Prepare
    task = _DigitCameras()
    spec = PartitionSpec("by-camera", 2, seed=0)

    # Execute
    parts = [task.load_client_data("digits", spec, p, Path("."), False) for p in (0, 1)]

    # Assert: partition 0 gets cameras 0 and 2, partition 1 cameras 1 and 3
    assert _cameras_of(parts[0].train) | _cameras_of(parts[0].val) == {0, 2}
    assert _cameras_of(parts[1].train) | _cameras_of(parts[1].val) == {1, 3}
    total = sum(len(p.train) + len(p.val) for p in parts)
    assert total == len(load_digits(True))


def test_other_partitionings_of_a_camera_task_go_by_label() -> None:
    # Prepare
    spec = PartitionSpec("iid", 3, seed=4)

    # Execute
    rows = _DigitCameras().partition_rows("digits", spec, Path("."), False)

    # Assert: the same rows as the plain digits task
    expected = get_task("digits-cnn").partition_rows("digits", spec, Path("."), False)
    for got, want in zip(rows, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_nodes_own_cameras_are_split_80_20_by_seed_and_partition() -> None:
    # Prepare
    task = _DigitCameras()

    # Execute
    one = task.load_camera_client_data("digits", (1,), 3, 0, Path("."), False)
    again = task.load_camera_client_data("digits", (1,), 3, 0, Path("."), False)
    other = task.load_camera_client_data("digits", (1,), 3, 1, Path("."), False)

    # Assert
    size = len(task.load_camera_data("digits", (1,), Path("."), False))
    assert len(one.train) + len(one.val) == size
    assert abs(len(one.val) - 0.2 * size) <= 10
    assert _cameras_of(one.train) | _cameras_of(one.val) == {1}
    np.testing.assert_array_equal(one.val.features, again.val.features)
    assert not np.array_equal(one.val.features, other.val.features)
    assert one.partition_id == 0 and other.partition_id == 1


def test_only_the_testbed_task_is_a_camera_task() -> None:
    assert [n for n, t in TASKS.items() if isinstance(t, CameraTask)] == [
        "testbed-vehicles"
    ]


def test_a_camera_task_must_say_where_its_cameras_are() -> None:
    # A subclass without camera_ids / load_camera_data cannot be instantiated.
    class Incomplete(CameraTask):
        name: ClassVar[str] = "incomplete"
        datasets: ClassVar[tuple[str, ...]] = ("digits",)

        def build_model(self) -> nn.Module:
            return nn.Identity()

        def load_dataset(
            self, dataset: str, train: bool, data_dir: Path, download: bool
        ) -> LabeledArrays:
            return load_digits(train)

    with pytest.raises(TypeError, match="camera_ids"):
        Incomplete()  # type: ignore[abstract]
