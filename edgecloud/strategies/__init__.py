"""Flower-side protocols: strategies, strategy wrappers and the training loop."""

from edgecloud.strategies.differential_privacy import (
    CLIENT_SIDE_MODES,
    DpParams,
    make_dp_client_mod,
    wrap_with_dp,
)
from edgecloud.strategies.fl_baselines import (
    BASELINE_NAMES,
    BaselineParams,
    build_baseline,
)
from edgecloud.strategies.secure_inference import SECURE_INFERENCE, SecureInference
from edgecloud.strategies.split_learning import SPLIT_NAMES, SplitLearning, SplitParams

STRATEGY_NAMES: tuple[str, ...] = (*BASELINE_NAMES, *SPLIT_NAMES, SECURE_INFERENCE)

__all__ = [
    "BASELINE_NAMES",
    "CLIENT_SIDE_MODES",
    "SECURE_INFERENCE",
    "SPLIT_NAMES",
    "STRATEGY_NAMES",
    "BaselineParams",
    "DpParams",
    "SecureInference",
    "SplitLearning",
    "SplitParams",
    "build_baseline",
    "make_dp_client_mod",
    "wrap_with_dp",
]
