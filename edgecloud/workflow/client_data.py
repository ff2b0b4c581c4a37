"""A ClientApp's local data: its partition of the task, or its own testbed cameras."""

from __future__ import annotations

from pathlib import Path

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


def node_cameras(root: Path, node: NodeConfig) -> tuple[int, ...]:
    """The node's own cameras, else the training cameras dealt round-robin.

    Raises
    ------
    ConfigError
        If the node gets no camera, or names one the testbed lacks.
    """
    from edgecloud.data.testbed import load_testbed

    testbed = load_testbed(root)
    known = sorted(c.camera_id for c in testbed.cameras)
    if node.cameras is not None:
        unknown = sorted(set(node.cameras) - set(known))
        if unknown:
            raise ConfigError(
                f"node config key 'cameras' has value {list(node.cameras)}, but "
                f"testbed {root} lacks {unknown}; expected ids among {known}"
            )
        return node.cameras
    train = sorted(c.camera_id for c in testbed.cameras if c.split == "train")
    mine = tuple(train[node.partition_id :: node.num_partitions])
    if not mine:
        raise ConfigError(
            f"partition-id {node.partition_id} of {node.num_partitions} gets none "
            f"of testbed {root}'s {len(train)} training cameras {train}; expected "
            "at most as many SuperNodes as training cameras, or 'cameras' in the "
            "node config"
        )
    return mine
