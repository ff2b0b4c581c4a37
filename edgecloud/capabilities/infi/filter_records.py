"""The InFi skip filter on the wire and on disk: built, packed, checked, saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord

from edgecloud.infi import InputFilter, feature_network
from edgecloud.workflow.exchange import DroppedError


def build_filter(size: tuple[int, int], seed: int) -> InputFilter:
    """The image skip filter every node and the server start from.

    The same ``seed`` gives the same weights on the server (the global filter)
    and on every node (its own filter in local mode), so both modes start equal.

    Parameters
    ----------
    size : tuple[int, int]
        ``(width, height)`` of the frames the filter sees.
    seed : int
        Seed of the feature network's and the classifier's initialisation.
    """
    width, height = size
    features = feature_network("image", (3, height, width), seed=seed)
    return InputFilter(features, seed=seed)


def to_arrays(model: InputFilter) -> ArrayRecord:
    """Its weights as an ``ArrayRecord`` (what FedAvg averages)."""
    return ArrayRecord(model.state_dict())


def from_arrays(arrays: ArrayRecord, size: tuple[int, int]) -> InputFilter:
    """A filter holding ``arrays`` (tensors only: nothing is unpickled).

    Raises
    ------
    ValueError
        If the weights do not fit the image skip filter.
    """
    model = build_filter(size, seed=0)
    try:
        model.load_state_dict(arrays.to_torch_state_dict())
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[:2])
        raise ValueError(
            f"filter weights do not fit the skip filter ({detail})"
        ) from None
    return model


def check_like(arrays: ArrayRecord, reference: ArrayRecord) -> None:
    """Raise DroppedError unless ``arrays`` can be averaged with ``reference``.

    Same names, shapes and dtypes, every value finite: a node that sends another
    model or diverged to NaN would otherwise spoil (or crash) the average.
    """
    if list(arrays.keys()) != list(reference.keys()):
        missing = sorted(set(reference.keys()) - set(arrays.keys()))
        extra = sorted(set(arrays.keys()) - set(reference.keys()))
        raise DroppedError(
            f"filter weights have other tensors (missing {missing}, extra {extra})"
        )
    for name, array in arrays.items():
        expected = reference[name]
        if array.shape != expected.shape or array.dtype != expected.dtype:
            raise DroppedError(
                f"tensor '{name}' is {array.dtype} {list(array.shape)}; expected "
                f"{expected.dtype} {list(expected.shape)}"
            )
        if not np.isfinite(array.numpy()).all():
            raise DroppedError(f"tensor '{name}' holds NaN or inf")


def save_filter(arrays: ArrayRecord, path: Path) -> None:
    """Write the weights as a torch state dict (load it with ``weights_only``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(arrays.to_torch_state_dict(), path)
