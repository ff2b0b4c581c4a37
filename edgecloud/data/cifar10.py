"""CIFAR-10 through torchvision from its on-disk format (downloaded if allowed)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from filelock import FileLock

from edgecloud.data.arrays import LabeledArrays
from edgecloud.exceptions import DatasetNotFoundError

NUM_CLASSES = 10


def load_cifar10(root: Path, train: bool, download: bool) -> LabeledArrays:
    """Load the CIFAR-10 training or test set from ``root/cifar-10-batches-py``.

    Parameters
    ----------
    root : pathlib.Path
        Directory holding (or receiving) ``cifar-10-batches-py``.
    train : bool
        The 50 000 training images if true, else the 10 000 test images.
    download : bool
        Download the archive into ``root`` if it is missing. Concurrent callers on
        one machine (simulated clients, SuperNodes sharing a disk) are serialised by
        a file lock so that only one downloads.

    Returns
    -------
    LabeledArrays
        ``uint8`` features of shape ``(N, 3, 32, 32)`` and ``int64`` labels.

    Raises
    ------
    DatasetNotFoundError
        If the files are missing or corrupted and may not or could not be downloaded.
    """
    return _load_cached(root.expanduser().absolute(), train, download)


@functools.lru_cache(maxsize=2)
def _load_cached(root: Path, train: bool, download: bool) -> LabeledArrays:
    # Imported here: torchvision takes ~1 s to import, and every ClientApp process
    # imports the task registry (and so this module) whatever task it runs.
    from torchvision.datasets import CIFAR10

    root.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(root / ".cifar10.lock")):
            dataset = CIFAR10(root=str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DatasetNotFoundError(
            f"CIFAR-10 not found or corrupted under {root} ({err}); set run-config "
            "'data-download=true' on a machine with internet access, or place the "
            "extracted 'cifar-10-batches-py' folder there (node config 'data-dir')"
        ) from err
    except OSError as err:  # URLError and friends when the download fails
        raise DatasetNotFoundError(
            f"CIFAR-10 could not be downloaded into {root}: {err}"
        ) from err
    # (N, 32, 32, 3) uint8 -> (N, 3, 32, 32)
    features = np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2))
    labels = np.asarray(dataset.targets, dtype=np.int64)
    return LabeledArrays(features, labels, NUM_CLASSES)
