"""scikit-learn's bundled handwritten digits (1797 8x8 images): real data, offline."""

from __future__ import annotations

import functools

import numpy as np

from edgecloud.data.arrays import LabeledArrays, stratified_split

NUM_CLASSES = 10
TEST_FRACTION = 0.2
# The train/test split is fixed, independent of the run seed, so that accuracies of
# runs with different seeds are measured on the same held-out images.
_SPLIT_SEED = 20240601


@functools.lru_cache(maxsize=1)
def _load_all() -> LabeledArrays:
    # scikit-learn costs ~1.3 s to import: only when the digits are first needed
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    # Pixel values are 0..16; scale to [0, 1].  (N, 64) -> (N, 1, 8, 8)
    features = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    return LabeledArrays(features, labels, NUM_CLASSES)


def load_digits(train: bool) -> LabeledArrays:
    """The fixed training (80 %) or held-out test (20 %) split of the digits."""
    data = _load_all()
    train_idx, test_idx = stratified_split(data.labels, TEST_FRACTION, _SPLIT_SEED)
    return data.subset(train_idx if train else test_idx)
