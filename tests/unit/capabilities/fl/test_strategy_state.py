"""Strategy state survives export/restore (FedAdam moments, FedAvgM, DP clip norm)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideAdaptiveClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
)

from edgecloud.capabilities.fl.round_tracking import RoundTracker
from edgecloud.capabilities.fl.strategy_state import (
    export_strategy_state,
    restore_strategy_state,
)
from edgecloud.exceptions import CheckpointError


def test_fedadam_moments_round_trip_through_wrappers() -> None:
    # Prepare
    source = RoundTracker(FedAdam())
    source.inner.m_t = {"w": np.ones(3)}  # type: ignore[attr-defined]
    source.inner.v_t = {"w": np.full(3, 2.0)}  # type: ignore[attr-defined]
    target = RoundTracker(FedAdam())

    # Execute
    restore_strategy_state(target, export_strategy_state(source))

    # Assert
    np.testing.assert_array_equal(target.inner.m_t["w"], np.ones(3))  # type: ignore[attr-defined]
    np.testing.assert_array_equal(target.inner.v_t["w"], np.full(3, 2.0))  # type: ignore[attr-defined]


def test_fedavgm_momentum_and_adaptive_clip_norm() -> None:
    # Prepare
    source = DifferentialPrivacyServerSideAdaptiveClipping(
        FedAvgM(server_momentum=0.9), noise_multiplier=0.1, num_sampled_clients=2
    )
    source.clipping_norm = 0.37
    source.strategy.momentum_vector = [np.arange(4.0)]  # type: ignore[attr-defined]
    target = DifferentialPrivacyServerSideAdaptiveClipping(
        FedAvgM(server_momentum=0.9), noise_multiplier=0.1, num_sampled_clients=2
    )

    # Execute
    restore_strategy_state(target, export_strategy_state(source))

    # Assert
    assert target.clipping_norm == pytest.approx(0.37)
    np.testing.assert_array_equal(target.strategy.momentum_vector[0], np.arange(4.0))  # type: ignore[attr-defined]


def test_state_from_another_strategy_is_rejected() -> None:
    # Prepare
    source = FedAdam()
    source.m_t = {"w": np.ones(1)}

    # Execute / Assert
    with pytest.raises(CheckpointError, match="strategy chain"):
        restore_strategy_state(FedAvg(), export_strategy_state(source))
