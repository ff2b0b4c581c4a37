"""Export and restore the cross-round state of Flower strategies (for resume)."""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.serverapp.strategy import Strategy

from edgecloud.capabilities.fl.delegating import unwrap
from edgecloud.exceptions import CheckpointError
from edgecloud.results.checkpoints import StrategyState

# Attributes that carry information from one round to the next in Flower 1.41:
# FedOpt's moments (FedAdam, FedYogi, FedAdagrad), FedAvgM's server momentum and
# the adaptive-clipping DP wrappers' current clipping norm. Everything else is
# either configuration or recomputed from the arrays at the start of a round.
_STATEFUL_ATTRIBUTES = ("m_t", "v_t", "momentum_vector", "clipping_norm")


def export_strategy_state(strategy: Strategy) -> StrategyState:
    """Snapshot of the stateful attributes along the wrapper chain."""
    state: StrategyState = {}
    for depth, part in enumerate(unwrap(strategy)):
        for attr in _STATEFUL_ATTRIBUTES:
            value = getattr(part, attr, None)
            if value is None:
                continue
            key = f"{depth}.{type(part).__name__}.{attr}"
            if isinstance(value, dict):
                state[key] = {k: np.array(v) for k, v in value.items()}
            elif isinstance(value, list):
                state[key] = [np.array(v) for v in value]
            else:
                state[key] = float(value)
    return state


def restore_strategy_state(strategy: Strategy, state: StrategyState) -> None:
    """Put a snapshot from :func:`export_strategy_state` back.

    Raises
    ------
    CheckpointError
        If the snapshot was taken from a differently composed strategy.
    """
    chain = unwrap(strategy)
    for key, value in state.items():
        depth_text, class_name, attr = key.split(".", 2)
        depth = int(depth_text)
        if depth >= len(chain) or type(chain[depth]).__name__ != class_name:
            raise CheckpointError(
                f"checkpoint holds state {key!r} but the strategy chain is "
                f"{[type(s).__name__ for s in chain]}"
            )
        restored: Any = value
        if isinstance(value, dict):
            restored = {k: np.array(v) for k, v in value.items()}
        elif isinstance(value, list):
            restored = [np.array(v) for v in value]
        setattr(chain[depth], attr, restored)
