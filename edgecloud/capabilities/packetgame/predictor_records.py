"""The contextual predictor on the wire and on disk: built, packed, unpacked, saved."""

from __future__ import annotations

import pickle  # only for its error type: loading is torch's weights_only
from pathlib import Path

import torch
from flwr.app import ArrayRecord

from edgecloud.exceptions import ConfigError
from edgecloud.packetgame.predictor import ContextualPredictor


def build_predictor(window: int, seed: int) -> ContextualPredictor:
    """The predictor every node and the server agree on (as ``train_predictor``)."""
    return ContextualPredictor(window, kernel=min(3, window), seed=seed)


def to_arrays(predictor: ContextualPredictor) -> ArrayRecord:
    """Its persistent weights as an ``ArrayRecord`` (what FedAvg averages)."""
    return ArrayRecord(predictor.state_dict())


def from_arrays(arrays: ArrayRecord, window: int) -> ContextualPredictor:
    """A predictor for ``window`` holding ``arrays`` (eval mode).

    Raises
    ------
    ValueError
        If the weights do not fit a predictor of this window.
    """
    predictor = build_predictor(window, seed=0)
    try:
        predictor.load_state_dict(arrays.to_torch_state_dict())
    except RuntimeError as err:
        detail = " ".join(line.strip() for line in str(err).splitlines()[1:2])
        raise ValueError(
            f"predictor weights do not fit window={window} ({detail})"
        ) from None
    return predictor.eval()


def save_predictor(arrays: ArrayRecord, path: Path) -> None:
    """Write the weights as a torch state dict (loaded with ``weights_only``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(arrays.to_torch_state_dict(), path)


def load_predictor(path: Path, key: str, window: int) -> ArrayRecord:
    """Weights a train run saved, checked against ``window``.

    Raises
    ------
    ConfigError
        Naming ``key`` and the file if it does not hold a predictor for ``window``.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as err:
        raise ConfigError(
            f"run-config key '{key}' has value {str(path)!r}, which does not load "
            f"as a torch state dict ({str(err).splitlines()[0]}); expected "
            "<output-dir>/packetgame-predictor.pt of a train run"
        ) from None
    arrays = ArrayRecord(state)
    try:
        from_arrays(arrays, window)
    except ValueError as err:
        raise ConfigError(
            f"run-config key '{key}' has value {str(path)!r}, whose {err}; expected "
            "a predictor trained with the same packetgame.window"
        ) from None
    return arrays
