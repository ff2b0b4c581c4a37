"""The testbed-vehicles task: camera sets per node, held-out cameras as test set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecloud.data.partitioning import PartitionSpec
from edgecloud.tasks import CameraTask, TrainSettings, get_task


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def test_node_cameras_choose_the_data_and_test_set_is_held_out(data_dir: Path) -> None:
    # Prepare
    task = get_task("testbed-vehicles")
    assert isinstance(task, CameraTask)

    # Execute: node config cameras=1 and cameras='0,1' (run seed 0)
    one = task.load_camera_client_data("testbed-tiny", (1,), 0, 0, data_dir, False)
    two = task.load_camera_client_data("testbed-tiny", (0, 1), 0, 1, data_dir, False)
    test = task.load_dataset("testbed-tiny", False, data_dir, False)
    train = task.load_dataset("testbed-tiny", True, data_dir, False)

    # Assert: 120 sampled frames per camera (24 s at 10 fps, every 2nd)
    assert len(one.train) + len(one.val) == 120
    assert len(two.train) + len(two.val) == 240
    assert len(train) == 240 and len(test) == 120
    assert one.train.features.shape[1:] == (3, 120, 160)
    assert one.train.features.dtype == np.uint8


def test_by_camera_partitions_and_a_training_step(data_dir: Path) -> None:
    # Prepare
    task = get_task("testbed-vehicles")
    spec = PartitionSpec("by-camera", 2, seed=0)

    # Execute
    parts = [
        task.load_client_data("testbed-tiny", spec, p, data_dir, False) for p in (0, 1)
    ]
    model = task.build_model()
    result = task.train(model, parts[0].train, TrainSettings(1, 32, 0.01, 0.9, 0))

    # Assert
    assert [len(p.train) + len(p.val) for p in parts] == [120, 120]
    assert parts[0].label_histogram != parts[1].label_histogram
    assert np.isfinite(result.train_loss)


def test_unknown_camera_is_a_clear_error(data_dir: Path) -> None:
    task = get_task("testbed-vehicles")
    assert isinstance(task, CameraTask)
    with pytest.raises(ValueError, match=r"names \[7\], not in testbed"):
        task.load_camera_client_data("testbed-tiny", (0, 7), 0, 0, data_dir, False)
