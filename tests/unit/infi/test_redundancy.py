"""Redundancy measures: each f_h on small batches, r_N, the optimal filter rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgecloud.infi.redundancy import (
    PairwiseRedundancy,
    Redundancy,
    bounded_regression,
    class_subset,
    confidence_threshold,
    optimal_filter_rate,
    redundant_share,
    unchanged_result,
    zero_count,
)


def test_zero_count_flags_empty_detections() -> None:
    # Prepare
    measure = zero_count()

    # Execute
    redundant = measure(np.array([0, 3, 0, 1]))

    # Assert
    assert isinstance(measure, Redundancy)
    assert redundant.dtype == np.bool_
    assert redundant.tolist() == [True, False, True, False]


def test_class_subset_flags_classes_outside_the_useful_ones() -> None:
    # Prepare: the application only uses classes 1 and 4
    measure = class_subset({1, 4})

    # Execute
    redundant = measure(np.array([0, 1, 2, 4, 4]))

    # Assert
    assert redundant.tolist() == [True, False, True, False, False]


def test_confidence_threshold_flags_unconfident_rows() -> None:
    # Prepare: t = 0.9 as the thesis' GC and SC tasks
    measure = confidence_threshold(0.9)
    probs = np.array([[0.95, 0.05], [0.6, 0.4], [0.1, 0.9], [0.02, 0.98]])

    # Execute
    redundant = measure(probs)

    # Assert: 0.9 itself is not above t (f_h(y) = sign(y > t))
    assert redundant.tolist() == [False, True, True, False]


def test_bounded_regression_follows_the_thesis_lower_bound() -> None:
    # Prepare: f_h(y) = 1(y > T) with T = 0, and a range variant (0, 2]
    thesis = bounded_regression(0.0)
    ranged = bounded_regression(0.0, 2.0)
    values = np.array([-1.0, 0.0, 0.5, 2.0, 7.0])

    # Execute
    thesis_redundant = thesis(values)
    ranged_redundant = ranged(values)

    # Assert: T itself is redundant, high itself is not
    assert thesis_redundant.tolist() == [True, True, False, False, False]
    assert ranged_redundant.tolist() == [True, True, False, False, True]


def test_unchanged_result_exact_and_with_tolerance() -> None:
    # Prepare
    exact = unchanged_result()
    loose = unchanged_result(tolerance=0.5)

    # Execute
    classes = exact.same(np.array([1, 2, 3]), np.array([1, 0, 3]))
    values = loose.same(np.array([1.0, 2.0, 3.0]), np.array([1.4, 2.6, 3.0]))
    boxes = loose.same(
        np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[0.2, 0.1], [1.0, 1.8]])
    )

    # Assert: a multi-valued result needs every entry within the tolerance
    assert isinstance(exact, PairwiseRedundancy)
    assert classes.tolist() == [True, False, True]
    assert values.tolist() == [True, False, True]
    assert boxes.tolist() == [True, False]


def test_redundant_share_is_r_n() -> None:
    # Prepare
    counts = np.array([0, 0, 2, 5])

    # Execute
    share = redundant_share(counts, zero_count())

    # Assert
    assert share == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("target", "r_n", "expected"),
    [
        (0.9, 0.3, 0.4),  # all redundant inputs plus 10 % of all inputs
        (0.9, 0.95, 1.0),  # capped: filtering everything still meets the target
        (1.0, 0.25, 0.25),  # no accuracy to spend: only the redundant ones
    ],
)
def test_optimal_filter_rate(target: float, r_n: float, expected: float) -> None:
    assert optimal_filter_rate(target, r_n) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        # probabilities live in [0, 1]
        (lambda: confidence_threshold(1.5), r"threshold is 1.5; expected a prob"),
        # NaN threshold
        (lambda: confidence_threshold(math.nan), r"threshold is nan; expected a fin"),
        # an empty useful set makes every input redundant
        (lambda: class_subset(set()), r"useful is \[\]; expected at least one"),
        # class indices are non-negative integers
        (lambda: class_subset({-1, 2}), r"useful contains -1; expected class"),
        # a float is not a class index
        (lambda: class_subset([1.5]), r"useful contains 1.5; expected class"),  # type: ignore[list-item]
        # an empty useful interval
        (lambda: bounded_regression(2.0, 1.0), r"high is 1.0; expected a number > low"),
        # the thesis' T must be finite
        (lambda: bounded_regression(-math.inf), r"low is -inf; expected a finite"),
        # negative tolerance
        (lambda: unchanged_result(-0.1), r"tolerance is -0.1; expected a finite"),
        # target accuracy 0 is no target
        (lambda: optimal_filter_rate(0.0, 0.5), r"target_accuracy is 0.0; expected"),
        # r_N is a share
        (lambda: optimal_filter_rate(0.9, 1.2), r"r_n is 1.2; expected a share"),
    ],
)
def test_factories_reject_bad_arguments(make: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("measure", "outputs", "match"),
    [
        # counts of a batch are one per input, not a matrix
        (zero_count(), [[0, 1]], r"outputs has shape \(1, 2\); expected \(N,\)"),
        # a negative count
        (zero_count(), [2, -1], r"outputs\[1\] is -1; expected a count >= 0"),
        # counts must be integers
        (zero_count(), [0.0, 2.5], r"outputs has dtype float64; expected integers"),
        # class indices must be integers
        (class_subset({1}), [1.0], r"outputs has dtype float64; expected integers"),
        # confidence needs (N, C) probabilities
        (confidence_threshold(0.5), [0.2, 0.9], r"outputs has shape \(2,\)"),
        # a probability above 1
        (
            confidence_threshold(0.5),
            [[0.2, 1.3]],
            r"outputs\[0, 1\] is 1.3; expected a probability",
        ),
        # NaN in a regression output
        (bounded_regression(0.0), [1.0, math.nan], r"outputs\[1\] is nan; expected"),
    ],
)
def test_measures_reject_bad_outputs(
    measure: Redundancy, outputs: list[object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        measure(np.array(outputs))


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        # one result short
        ([1, 2], [1], r"b has shape \(1,\); expected \(2,\) \(the shape of a\)"),
        # NaN results are never equal to anything
        ([1.0, math.nan], [1.0, 2.0], r"a\[1\] is nan; expected a finite result"),
        # a scalar is not a batch
        (3, 3, r"a has shape \(\); expected \(N,\)"),
    ],
)
def test_unchanged_result_rejects_bad_pairs(a: object, b: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        unchanged_result().same(np.array(a), np.array(b))


def test_redundant_share_rejects_empty_outputs_and_bad_measures() -> None:
    # Prepare: a custom measure returning 0/1 integers instead of flags
    def ints(outputs: object) -> np.ndarray:
        return np.zeros(len(np.asarray(outputs)), dtype=np.int64)

    # Execute / Assert: no inputs, no share
    with pytest.raises(ValueError, match=r"outputs is empty; expected at least one"):
        redundant_share(np.array([], dtype=np.int64), zero_count())
    # a measure must return (N,) bool flags
    with pytest.raises(ValueError, match=r"measure returned int64 of shape \(2,\)"):
        redundant_share(np.array([0, 1]), ints)
