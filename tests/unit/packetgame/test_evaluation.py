"""Reading accuracy-vs-budget curves, and FedAvg of predictors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgecloud.packetgame import ContextualPredictor
from edgecloud.packetgame.evaluation import (
    CurvePoint,
    average_predictors,
    concurrency_gain,
    saving_at_accuracy,
    summary,
)


def _point(policy: str, saved: float, accuracy: float, task: str = "t") -> CurvePoint:
    return CurvePoint(
        task=task,
        policy=policy,
        fraction=1.0 - saved,
        budget=1.0 - saved,
        accuracy=accuracy,
        saved=saved,
        rounds=10,
        decode_seconds=0.0,
        decisions_per_second=0.0,
        wall_seconds=0.0,
    )


def test_saving_at_accuracy_interpolates_the_crossing() -> None:
    # Prepare: 0.95 at 40 % saved, 0.85 at 60 % saved -> 0.9 at 50 %
    curve = [_point("p", 0.4, 0.95), _point("p", 0.6, 0.85), _point("p", 0.2, 0.99)]

    # Execute / Assert
    assert saving_at_accuracy(curve, 0.9) == pytest.approx(0.5)


def test_saving_at_accuracy_takes_the_best_point_above_target() -> None:
    # A curve that stays above the target everywhere: its largest saving
    curve = [_point("p", 0.3, 0.97), _point("p", 0.7, 0.92)]
    assert saving_at_accuracy(curve, 0.9) == pytest.approx(0.7)


def test_saving_at_accuracy_is_none_when_never_reached() -> None:
    curve = [_point("p", 0.3, 0.8), _point("p", 0.7, 0.5)]
    assert saving_at_accuracy(curve, 0.9) is None


@pytest.mark.parametrize(
    ("saved", "expected"),
    [(0.0, 1.0), (0.5, 2.0), (0.75, 4.0), (None, None), (1.0, math.inf)],
)
def test_concurrency_gain(saved: float | None, expected: float | None) -> None:
    # Same decode capacity, 1 / (1 - saved) times the streams
    assert concurrency_gain(saved) == expected


def test_summary_relates_each_policy_to_the_oracle() -> None:
    # Prepare
    points = [
        _point("oracle", 0.4, 0.99),
        _point("oracle", 0.8, 0.95),
        _point("packetgame", 0.4, 0.95),
        _point("packetgame", 0.8, 0.85),
        _point("random", 0.4, 0.5),
    ]

    # Execute
    out = summary(points, 0.9)["t"]

    # Assert
    assert out["oracle"]["saved"] == pytest.approx(0.8)
    assert out["packetgame"]["saved"] == pytest.approx(0.6)
    assert out["packetgame"]["of-oracle"] == pytest.approx(0.75)
    assert out["packetgame"]["gain"] == pytest.approx(2.5)
    assert out["random"] == {"saved": None, "gain": None, "of-oracle": None}


def test_average_predictors_weights_each_parameter() -> None:
    # Prepare
    a, b = ContextualPredictor(3, seed=0), ContextualPredictor(3, seed=1)

    # Execute
    avg = average_predictors([a, b], [1.0, 3.0])

    # Assert: every parameter is the weighted mean; the inputs are untouched
    for key, value in avg.state_dict().items():
        expected = 0.25 * a.state_dict()[key] + 0.75 * b.state_dict()[key]
        torch.testing.assert_close(value, expected.to(value.dtype))
    assert not torch.equal(a.head.weight, avg.head.weight)
    views = np.zeros((2, 2, 3), np.float32)
    assert avg.predict(views, np.full(2, 0.5)).shape == (2, 1)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1.0], "2 predictors and 1 weights"),  # invalid: counts differ
        ([0.0, 0.0], "expected >= 0, sum > 0"),  # invalid: nothing to weight
        ([2.0, -1.0], "expected >= 0, sum > 0"),  # invalid: negative weight
    ],
)
def test_average_predictors_refuses_bad_weights(
    weights: list[float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        average_predictors([ContextualPredictor(3), ContextualPredictor(3)], weights)
