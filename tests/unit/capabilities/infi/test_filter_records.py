"""The skip filter on the wire and on disk: round trips, shape and value checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from edgecloud.capabilities.infi.filter_records import (
    build_filter,
    check_like,
    from_arrays,
    save_filter,
    to_arrays,
)
from edgecloud.workflow.exchange import DroppedError


def test_the_same_seed_builds_the_same_filter_and_it_round_trips(
    tmp_path: Path,
) -> None:
    # Prepare
    first, second = build_filter((40, 30), seed=3), build_filter((40, 30), seed=3)

    # Execute
    arrays = to_arrays(first)
    loaded = from_arrays(arrays, (40, 30))
    save_filter(arrays, tmp_path / "f.pt")
    saved = torch.load(tmp_path / "f.pt", weights_only=True)

    # Assert
    for name, tensor in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[name], tensor)
        torch.testing.assert_close(loaded.state_dict()[name], tensor)
        torch.testing.assert_close(saved[name], tensor)


def test_weights_of_another_model_are_refused() -> None:
    # Prepare: the classifier's weight with a wrong shape
    arrays = to_arrays(build_filter((40, 30), seed=0))
    name = "classifier.weight"
    arrays[name] = Array(np.zeros((2, 64), np.float32))

    # Execute / Assert
    with pytest.raises(ValueError, match="do not fit the skip filter"):
        from_arrays(arrays, (40, 30))


@pytest.mark.parametrize("fault", ["shape", "nan", "missing", "dtype"])
def test_a_reply_that_cannot_be_averaged_is_dropped(fault: str) -> None:
    # Prepare
    reference = to_arrays(build_filter((40, 30), seed=0))
    state = {name: a.numpy().copy() for name, a in reference.items()}
    name = "classifier.bias"
    if fault == "shape":  # another number of tasks
        state[name] = np.zeros(2, np.float32)
    elif fault == "nan":  # a node that diverged
        state[name] = np.full_like(state[name], np.nan)
    elif fault == "missing":  # another architecture
        del state[name]
    else:  # float64 would silently change the global filter's dtype
        state[name] = state[name].astype(np.float64)
    arrays = ArrayRecord({k: Array(v) for k, v in state.items()})

    # Execute / Assert
    with pytest.raises(DroppedError):
        check_like(arrays, reference)
    check_like(reference, reference)  # the reference itself passes
