"""A ClientApp's local data: this node's partition (or its own cameras) of the task."""

from __future__ import annotations

from edgecloud.exceptions import ConfigError
from edgecloud.settings import CommonSettings, NodeConfig
from edgecloud.tasks import CameraTask, ClientData


def load_node_data(common: CommonSettings, node: NodeConfig) -> ClientData:
    """Partition ``node.partition_id`` of the run's dataset, split train/validation.

    A node with its own ``cameras`` (node config) trains on exactly those cameras
    instead of a partition; that needs a camera task.
    """
    task = common.task_plugin
    if node.cameras is None:
        return task.load_client_data(
            common.resolved_dataset,
            common.partition_spec(node.num_partitions),
            node.partition_id,
            common.data_path,
            common.data_download,
        )
    if not isinstance(task, CameraTask):
        raise ConfigError(
            f"node config key 'cameras' has value {list(node.cameras)} but task "
            f"{common.task!r} has no cameras; expected a camera task (or no "
            "'cameras' in the node config)"
        )
    return task.load_camera_client_data(
        common.resolved_dataset,
        node.cameras,
        common.seed,
        node.partition_id,
        common.data_path,
        common.data_download,
    )
