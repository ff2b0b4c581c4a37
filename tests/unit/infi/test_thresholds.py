"""Operating points: skip and reuse thresholds at a target accuracy, known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgecloud.infi.cache import HKNNCache, reuse_stream
from edgecloud.infi.redundancy import unchanged_result
from edgecloud.infi.thresholds import (
    NoOperatingPointError,
    OperatingPoint,
    choose_reuse_threshold,
    choose_skip_threshold,
    choose_threshold,
    reuse_evaluation,
    skip_operating_point,
)

# six inputs by decreasing skip probability; the third is wrongly scored high
PROBS = np.array([0.9, 0.8, 0.8, 0.6, 0.3, 0.1])
REDUNDANT = np.array([True, True, False, True, False, False])


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        # skip the top 4 (one wrong): 5/6 is just enough
        (5 / 6, OperatingPoint(0.6, 4 / 6, 5 / 6)),
        # perfect accuracy: only 0.9; the two 0.8s go together, one is useful
        (1.0, OperatingPoint(0.9, 1 / 6, 1.0)),
        # half right is enough: skip everything
        (0.5, OperatingPoint(0.1, 1.0, 0.5)),
    ],
)
def test_choose_skip_threshold_by_hand(target: float, expected: OperatingPoint) -> None:
    # Execute
    point = choose_skip_threshold(PROBS, REDUNDANT, target)

    # Assert
    assert point.threshold == expected.threshold
    assert point.filter_rate == pytest.approx(expected.filter_rate)
    assert point.accuracy == pytest.approx(expected.accuracy)
    assert skip_operating_point(PROBS, REDUNDANT, point.threshold) == point


def test_skip_nothing_when_every_skip_is_wrong() -> None:
    # Execute: the only input is useful, skipping it costs all accuracy
    point = choose_skip_threshold(np.array([0.9]), np.array([False]), 0.95)

    # Assert
    assert point == OperatingPoint(math.inf, 0.0, 1.0)


def test_exact_sweep_beats_the_thesis_grid() -> None:
    # Prepare: noisy scores of random truth
    rng = np.random.default_rng(3)
    redundant = rng.random(200) < 0.6
    probs = np.clip(np.where(redundant, 0.7, 0.3) + rng.normal(0, 0.25, 200), 0, 1)
    grid = np.round(np.arange(0.0, 1.01, 0.01), 2)

    # Execute
    exact = choose_skip_threshold(probs, redundant, 0.9)
    on_grid = choose_threshold(
        grid,
        lambda t: (
            skip_operating_point(probs, redundant, t).filter_rate,
            skip_operating_point(probs, redundant, t).accuracy,
        ),
        0.9,
    )

    # Assert
    assert exact.accuracy >= 0.9
    assert exact.filter_rate >= on_grid.filter_rate
    assert exact == skip_operating_point(probs, redundant, exact.threshold)


def test_choose_threshold_prefers_rate_then_accuracy_then_smaller() -> None:
    # Prepare: (filter rate, accuracy) per threshold
    table = {
        0.2: (0.9, 0.85),  # filters most, too inaccurate
        0.4: (0.7, 0.91),
        0.5: (0.7, 0.95),  # same rate as 0.4, more accurate
        0.6: (0.7, 0.95),  # same as 0.5, larger threshold
        0.8: (0.4, 0.99),
    }

    # Execute: candidates in any order
    point = choose_threshold([0.8, 0.6, 0.2, 0.5, 0.4], lambda t: table[t], 0.9)

    # Assert
    assert point == OperatingPoint(0.5, 0.7, 0.95)


def test_choose_threshold_without_a_feasible_candidate() -> None:
    # Prepare
    table = {0.1: (0.5, 0.6), 0.9: (0.1, 0.8)}

    # Execute / Assert: the message names the most accurate candidate
    with pytest.raises(
        NoOperatingPointError, match=r"reaches accuracy 0.9; the most accurate is 0.8"
    ):
        choose_threshold(table, lambda t: table[t], 0.9)


def test_choose_reuse_threshold_from_served_results() -> None:
    # Prepare: reference results and what a replay serves at each θ_T
    reference = np.array([1, 2, 3, 4])
    replays = {
        0.3: ([1, 1, 3, 3], [False, True, False, True]),  # rate 0.5, acc 0.5
        0.6: ([1, 2, 3, 3], [False, False, False, True]),  # rate 0.25, acc 0.75
        0.9: ([1, 2, 3, 4], [False, False, False, False]),  # rate 0, acc 1
    }

    def serve(theta_t: float) -> tuple[np.ndarray, np.ndarray]:
        served, filtered = replays[theta_t]
        return np.array(served), np.array(filtered)

    # Execute
    point = choose_reuse_threshold([0.9, 0.3, 0.6], serve, reference, 0.75)

    # Assert
    assert point == OperatingPoint(0.6, 0.25, 0.75)


def test_reuse_accuracy_with_a_tolerance() -> None:
    # Prepare: regression results reused within 0.5
    reference = np.array([1.0, 2.0, 3.0, 4.0])
    served = np.array([1.0, 2.4, 3.9, 4.0])
    filtered = np.array([False, True, True, False])

    # Execute
    evaluate = reuse_evaluation(
        lambda _: (served, filtered), reference, unchanged_result(0.5)
    )

    # Assert: 3.9 for 3.0 is the only wrong result
    assert evaluate(0.5) == (0.5, 0.75)


def test_reuse_threshold_over_a_cache_replay() -> None:
    # Prepare: 3 warm-up entries (results 1, 1, 2), then 3 inputs near the 2
    embeddings = np.array([[0.0], [0.1], [0.2], [0.18], [0.19], [0.185]])
    reference = np.array([1, 1, 2, 2, 2, 2])

    def serve(theta_t: float) -> tuple[np.ndarray, np.ndarray]:
        cache = HKNNCache(capacity=3, dim=1, k=3, theta_threshold=theta_t)
        return reuse_stream(cache, embeddings, reference)

    # Execute
    point = choose_reuse_threshold([0.5, 0.7, 1.0], serve, reference, 0.9)

    # Assert: at θ_T = 0.5 the 2-of-3 majority (1) is reused wrongly three times;
    # at 0.7 the misses replace the 1s and the last input reuses a unanimous 2,
    # as at 1.0 (same point, the smaller θ_T wins)
    assert point == OperatingPoint(0.7, 1 / 6, 1.0)
    assert reuse_evaluation(serve, reference)(0.5) == (0.5, 0.5)


@pytest.mark.parametrize(
    ("probs", "redundant", "target", "match"),
    [
        # no accuracy target
        ([0.5], [True], 0.0, r"target_accuracy is 0.0; expected a value in \(0, 1\]"),
        # above 100 %
        ([0.5], [True], 1.5, r"target_accuracy is 1.5; expected"),
        # NaN target
        ([0.5], [True], math.nan, r"target_accuracy is nan; expected a number"),
        # one flag short
        ([0.5, 0.2], [True], 0.9, r"redundant has shape \(1,\); expected \(2,\)"),
        # a probability above 1
        ([0.5, 1.2], [True, False], 0.9, r"skip_probability\[1\] is 1.2; expected"),
        # NaN probability
        ([math.nan], [True], 0.9, r"skip_probability\[0\] is nan; expected a prob"),
        # 0/1 integers instead of flags
        ([0.5], [1], 0.9, r"redundant has dtype int64; expected bool"),
        # no inputs
        ([], [], 0.9, r"skip_probability has shape \(0,\); expected \(N,\), N >= 1"),
        # a matrix of probabilities
        ([[0.5]], [[True]], 0.9, r"skip_probability has shape \(1, 1\); expected"),
    ],
)
def test_choose_skip_threshold_rejects_bad_inputs(
    probs: list[object], redundant: list[object], target: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        choose_skip_threshold(np.array(probs), np.array(redundant), target)


def test_choose_threshold_rejects_bad_candidates_and_evaluations() -> None:
    # Execute / Assert: nothing to choose from
    with pytest.raises(ValueError, match=r"candidates is empty; expected at least"):
        choose_threshold([], lambda t: (0.0, 1.0), 0.9)
    # a NaN candidate
    with pytest.raises(ValueError, match=r"candidates\[1\] is nan; expected a number"):
        choose_threshold([0.5, math.nan], lambda t: (0.0, 1.0), 0.9)
    # an evaluation outside [0, 1]
    with pytest.raises(ValueError, match=r"evaluate\(0.5\) gave accuracy 1.5"):
        choose_threshold([0.5], lambda t: (0.2, 1.5), 0.9)


def test_choose_reuse_threshold_rejects_bad_inputs() -> None:
    # Prepare
    reference = np.array([1, 2])

    def short(theta_t: float) -> tuple[np.ndarray, np.ndarray]:
        return np.array([1]), np.array([False, False])

    def int_mask(theta_t: float) -> tuple[np.ndarray, np.ndarray]:
        return np.array([1, 2]), np.array([0, 1])

    def exact(theta_t: float) -> tuple[np.ndarray, np.ndarray]:
        return reference, np.array([False, False])

    # Execute / Assert: θ_T is a share
    with pytest.raises(ValueError, match=r"candidates\[0\] is 1.5; expected a homo"):
        choose_reuse_threshold([1.5], exact, reference, 0.9)
    # served results one short
    with pytest.raises(ValueError, match=r"gave served results of shape \(1,\)"):
        choose_reuse_threshold([0.5], short, reference, 0.9)
    # a filtered mask of 0/1 integers
    with pytest.raises(ValueError, match=r"gave a filtered mask of int64 \(2,\)"):
        choose_reuse_threshold([0.5], int_mask, reference, 0.9)
    # no reference results
    with pytest.raises(ValueError, match=r"reference has shape \(0,\); expected"):
        choose_reuse_threshold([0.5], exact, np.array([]), 0.9)
