"""Datasets, partitioning and synthetic testbeds (no flwr import)."""

from edgecloud.data.arrays import LabeledArrays
from edgecloud.data.partitioning import (
    PartitionSpec,
    label_histogram,
    partition_indices,
)

__all__ = ["LabeledArrays", "PartitionSpec", "label_histogram", "partition_indices"]
