"""Day -> night distribution shift (thesis Fig. 3.5 / 5.3) with a small model."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecloud.data.testbed import generate_testbed, preset
from edgecloud.models import BlackBoxTraining, domain_shift

pytestmark = pytest.mark.slow


def test_day_trained_vehicle_counter_fails_at_night_and_recovers_with_both(
    tmp_path: Path,
) -> None:
    # Prepare: 3 cameras x 48 s (a simulated day each), 160x120
    testbed, _ = generate_testbed(
        preset("tiny", duration_s=48.0), tmp_path / "testbed", progress=False
    )

    # Execute: held-out 5-second blocks of every camera isolate day vs night
    result = domain_shift(testbed, BlackBoxTraining(epochs=12), every=1, split="time")

    # Assert: >= 15 points lost on night frames, regained by training on both
    assert result["night_drop_points"] >= 15.0, result
    assert result["night_recovery_points"] >= 15.0, result
    assert result["both_night_accuracy"] >= result["day_only_night_accuracy"] + 0.15


def test_unknown_split_and_a_too_short_testbed_are_rejected(tmp_path: Path) -> None:
    testbed, _ = generate_testbed(
        preset("tiny", num_cameras=2, duration_s=2.0), tmp_path / "t", progress=False
    )
    with pytest.raises(ValueError, match="split is 'random'; expected one of"):
        domain_shift(testbed, BlackBoxTraining(epochs=1), split="random")
    # The held-out blocks of split "time" start at 15 s: none in a 2 s testbed.
    with pytest.raises(ValueError, match="has no held-out day, held-out night"):
        domain_shift(testbed, BlackBoxTraining(epochs=1), split="time")
