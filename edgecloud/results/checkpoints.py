"""Per-round checkpoints of the global model, strategy state and history."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from edgecloud.exceptions import CheckpointError
from edgecloud.results.history import RunHistory

_NAME = re.compile(r"^round-(\d{4,})\.pt$")
FORMAT_VERSION = 1

StrategyState = dict[str, float | dict[str, npt.NDArray[Any]] | list[npt.NDArray[Any]]]


@dataclass(frozen=True)
class Checkpoint:
    """The state needed to continue a run after round ``round``."""

    round: int
    arrays: dict[str, npt.NDArray[Any]]
    strategy_state: StrategyState
    history: RunHistory


def checkpoint_path(directory: Path, server_round: int) -> Path:
    """``directory/round-0007.pt`` for round 7."""
    return directory / f"round-{server_round:04d}.pt"


def save_checkpoint(directory: Path, checkpoint: Checkpoint) -> Path:
    """Write a checkpoint atomically (temp file + rename): a kill never leaves half."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_VERSION,
        "round": checkpoint.round,
        "arrays": {
            k: torch.from_numpy(np.array(v)) for k, v in checkpoint.arrays.items()
        },
        "strategy_state": _state_to_torch(checkpoint.strategy_state),
        "history": json.dumps(checkpoint.history.to_dict()),
    }
    path = checkpoint_path(directory, checkpoint.round)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (no code execution).

    Raises
    ------
    CheckpointError
        If the file is unreadable or not a checkpoint of this format.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("format") != FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: checkpoint format {payload.get('format')!r}; expected "
                f"{FORMAT_VERSION}"
            )
        return Checkpoint(
            round=int(payload["round"]),
            arrays={k: v.numpy() for k, v in payload["arrays"].items()},
            strategy_state=_state_from_torch(payload["strategy_state"]),
            history=RunHistory.from_dict(json.loads(payload["history"])),
        )
    except CheckpointError:
        raise
    except Exception as err:  # torch raises many types for damaged files
        raise CheckpointError(f"{path}: not a readable checkpoint ({err})") from err


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint with the highest round number in ``directory``, if any."""
    if not directory.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in directory.iterdir()
        if (m := _NAME.match(p.name)) is not None
    ]
    return max(found)[1] if found else None


def _state_to_torch(state: StrategyState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out[key] = {k: torch.from_numpy(np.array(v)) for k, v in value.items()}
        elif isinstance(value, list):
            out[key] = [torch.from_numpy(np.array(v)) for v in value]
        else:
            out[key] = float(value)
    return out


def _state_from_torch(state: dict[str, Any]) -> StrategyState:
    out: StrategyState = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out[key] = {k: v.numpy() for k, v in value.items()}
        elif isinstance(value, list):
            out[key] = [v.numpy() for v in value]
        else:
            out[key] = float(value)
    return out
