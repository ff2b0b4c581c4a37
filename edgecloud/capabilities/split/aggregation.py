"""Weighted averaging of model states (SplitFed's device fronts and server copies)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgecloud.types import NDArray


def weighted_mean(
    states: Sequence[dict[str, NDArray]], num_examples: Sequence[int]
) -> dict[str, NDArray]:
    """FedAvg of ``states`` weighted by ``num_examples`` (same keys in each state).

    Floating tensors are averaged in float64 and cast back to their dtype; counters
    (e.g. BatchNorm's ``num_batches_tracked``) take the largest value.
    """
    weights = np.asarray(num_examples, dtype=np.float64)
    weights /= weights.sum()
    out = {}
    for key in states[0]:
        stacked = np.stack([s[key] for s in states])
        if np.issubdtype(stacked.dtype, np.floating):
            out[key] = np.tensordot(weights, stacked, axes=1).astype(stacked.dtype)
        else:
            out[key] = stacked.max(axis=0)
    return out
