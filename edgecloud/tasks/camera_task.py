"""Camera tasks: datasets that know each example's camera (a node's own cameras).

A :class:`CameraTask` adds what only camera datasets can do: partitioning
``by-camera`` (every client gets whole cameras, natural non-IID domains) and node
config ``cameras`` (a node trains on exactly its own cameras).
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edgecloud.data.arrays import LabeledArrays
from edgecloud.data.partitioning import PartitionSpec, partition_by_group
from edgecloud.tasks.base import ClientData, Task, split_client_data


class CameraTask(Task):
    """A task whose examples are frames of known cameras."""

    @abstractmethod
    def camera_ids(
        self, dataset: str, data_dir: Path, download: bool
    ) -> npt.NDArray[np.int64]:
        """Camera id of every example of the training set, ``(N,)``."""

    @abstractmethod
    def load_camera_data(
        self, dataset: str, cameras: tuple[int, ...], data_dir: Path, download: bool
    ) -> LabeledArrays:
        """Every example (training and held-out cameras alike) of ``cameras``."""

    def load_camera_client_data(
        self,
        dataset: str,
        cameras: tuple[int, ...],
        seed: int,
        partition_id: int,
        data_dir: Path,
        download: bool,
    ) -> ClientData:
        """A node's own ``cameras`` (node config), split 80/20 into train/validation.

        Parameters
        ----------
        dataset : str
            One of the task's datasets.
        cameras : tuple of int
            The node's camera ids; they replace the run's partitioning.
        seed : int
            Run seed; with ``partition_id`` it seeds the train/validation split.
        partition_id : int
            The node's partition id (only seeds the split here).
        data_dir : pathlib.Path
            Where the dataset lives (or is generated).
        download : bool
            Whether the dataset may be fetched.

        Returns
        -------
        ClientData
            The frames of ``cameras``, split stratified 80/20.
        """
        part = self.load_camera_data(dataset, cameras, data_dir, download)
        return split_client_data(part, seed, partition_id)

    def partition_rows(
        self, dataset: str, spec: PartitionSpec, data_dir: Path, download: bool
    ) -> list[npt.NDArray[np.int64]]:
        """Whole cameras per partition for ``by-camera``, else as any task."""
        if spec.method == "by-camera":
            return partition_by_group(
                self.camera_ids(dataset, data_dir, download), spec
            )
        return super().partition_rows(dataset, spec, data_dir, download)
