"""A node's local data: its partition, or with node config ``cameras`` its own."""

from __future__ import annotations

from typing import Any

import pytest

from edgecloud.capability import load_run_settings
from edgecloud.exceptions import ConfigError
from edgecloud.settings import NodeConfig
from edgecloud.tasks import TASKS
from edgecloud.workflow.client_data import load_node_data
from tests.unit.tasks.test_camera_task import _cameras_of, _DigitCameras


def test_a_node_with_cameras_trains_on_exactly_those(
    run_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    monkeypatch.setitem(TASKS, "digit-cameras", _DigitCameras())
    common = load_run_settings({**run_config, "task": "digit-cameras"}).common
    own = NodeConfig.from_node_config(
        {"partition-id": 0, "num-partitions": 2, "cameras": "3,1"}
    )
    partition = NodeConfig.from_node_config({"partition-id": 1, "num-partitions": 2})

    # Execute
    cameras = load_node_data(common, own)
    iid = load_node_data(common, partition)

    # Assert: the cameras replace the partitioning; without them, a partition
    assert _cameras_of(cameras.train) | _cameras_of(cameras.val) == {1, 3}
    assert _cameras_of(iid.train) == {0, 1, 2, 3}
    assert cameras.partition_id == 0 and iid.partition_id == 1


def test_cameras_on_a_task_without_cameras_name_the_node_config_key(
    run_config: dict[str, Any],
) -> None:
    common = load_run_settings(run_config).common
    node = NodeConfig.from_node_config(
        {"partition-id": 0, "num-partitions": 2, "cameras": "0"}
    )
    with pytest.raises(ConfigError, match="node config key 'cameras' has value"):
        load_node_data(common, node)
