"""ClientApp glue: this node's partition of the run's dataset."""

from __future__ import annotations

from edgecloud.config import NodeConfig, RunConfig
from edgecloud.tasks import ClientData, get_task


def load_node_data(cfg: RunConfig, node: NodeConfig) -> ClientData:
    """Partition ``node.partition_id`` of the run's dataset, split train/validation."""
    return get_task(cfg.task).load_client_data(
        cfg.resolved_dataset,
        cfg.partition_spec(node.num_partitions),
        node.partition_id,
        node.data_path(cfg),
        cfg.data_download,
        node.cameras,
    )
