"""In-memory labeled arrays: the common currency between datasets and tasks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class LabeledArrays:
    """Features and integer labels held in memory.

    Parameters
    ----------
    features : numpy.ndarray
        Shape ``(N, C, H, W)``; dtype as stored (``uint8`` images are normalised by
        the task at batch time, which keeps CIFAR-10 at 150 MB instead of 600 MB).
    labels : numpy.ndarray
        Shape ``(N,)``, dtype ``int64``, values in ``[0, num_classes)``.
    num_classes : int
        Number of classes of the dataset (not only those present here).
    """

    features: npt.NDArray[np.generic]
    labels: npt.NDArray[np.int64]
    num_classes: int

    def __post_init__(self) -> None:
        if len(self.features) != len(self.labels):
            raise ValueError(
                f"features have {len(self.features)} rows but labels have "
                f"{len(self.labels)}; expected the same number"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: npt.ArrayLike) -> LabeledArrays:
        """Rows ``indices`` (in that order) as a new :class:`LabeledArrays`."""
        idx = np.asarray(indices, dtype=np.int64)
        return LabeledArrays(self.features[idx], self.labels[idx], self.num_classes)


def stratified_split(
    labels: npt.NDArray[np.int64], test_fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Split row indices into (train, test) keeping each label's share.

    Hand-written rather than scikit-learn's ``train_test_split`` because that one
    refuses classes with a single sample, which tiny non-IID partitions do have.
    """
    rng = np.random.default_rng(seed)
    train: list[npt.NDArray[np.int64]] = []
    test: list[npt.NDArray[np.int64]] = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        rng.shuffle(rows)
        n_test = round(len(rows) * test_fraction)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    train_idx = np.concatenate(train) if train else np.empty(0, dtype=np.int64)
    test_idx = np.concatenate(test) if test else np.empty(0, dtype=np.int64)
    rng.shuffle(train_idx)
    rng.shuffle(test_idx)
    return train_idx.astype(np.int64), test_idx.astype(np.int64)
