"""Temporal estimator: exploration of unseen streams, window means, forgetting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgecloud.packetgame import TemporalEstimator, greedy_select


def _bonus(horizon: int, count: int) -> float:
    return math.sqrt(3 * math.log(horizon) / (2 * count))


def test_fresh_estimator_ranks_every_stream_as_unseen() -> None:
    # Prepare
    estimator = TemporalEstimator(num_streams=4, window=3, horizon=100)

    # Execute
    estimates = estimator.estimate()

    # Assert
    assert estimates.shape == (4,)
    np.testing.assert_allclose(estimates, 2 + math.sqrt(1.5 * math.log(100)))
    assert estimator.unseen_estimate() == pytest.approx(estimates[0])


def test_unselected_streams_are_explored_first() -> None:
    # Prepare: stream 0 was selected with the best possible feedback
    estimator = TemporalEstimator(num_streams=3, window=5, horizon=1)
    estimator.update(np.array([True, False, False]), np.array([1.0, np.nan, np.nan]))

    # Execute: ln 1 = 0, the hardest case (no bonus for seen streams)
    estimates = estimator.estimate()
    selection = greedy_select(estimates, np.ones(3), budget=2.0)

    # Assert: seen stream at most 1, unseen ones 2; ties go to the lower index
    assert estimates.tolist() == [1.0, 2.0, 2.0]
    assert selection.chosen.tolist() == [False, True, True]


def test_mean_is_over_the_selected_rounds() -> None:
    # Prepare: stream 0 selected in 2 of 4 rounds (feedback 1 and 0.5)
    estimator = TemporalEstimator(num_streams=2, window=4, horizon=100)
    rounds = [
        ([True, True], [1.0, 0.0]),
        ([True, False], [0.5, np.nan]),
        ([False, False], [np.nan, np.nan]),
        ([False, True], [np.nan, 1.0]),
    ]
    for selected, feedback in rounds:
        estimator.update(np.array(selected), np.array(feedback))

    # Execute
    estimates = estimator.estimate()

    # Assert
    assert estimator.selection_counts().tolist() == [2, 2]
    np.testing.assert_allclose(estimates, [0.75 + _bonus(100, 2), 0.5 + _bonus(100, 2)])


def test_thesis_window_mean_divides_by_w() -> None:
    # Prepare: the same history with the thesis' 1/w form
    estimator = TemporalEstimator(num_streams=1, window=4, horizon=100, mean="window")
    estimator.update(np.array([True]), np.array([1.0]))
    estimator.update(np.array([True]), np.array([0.5]))

    # Execute
    estimate = estimator.estimate()

    # Assert: (1 + 0.5) / 4, not / 2
    np.testing.assert_allclose(estimate, [1.5 / 4 + _bonus(100, 2)])


def test_window_forgets_old_rounds() -> None:
    # Prepare
    estimator = TemporalEstimator(num_streams=2, window=3, horizon=50)
    estimator.update(np.array([True, True]), np.array([1.0, 1.0]))
    for _ in range(2):
        estimator.update(np.array([False, True]), np.array([np.nan, 0.0]))
    before = estimator.estimate()

    # Execute: a fourth round pushes round 1 out of the window
    estimator.update(np.array([False, True]), np.array([np.nan, 0.0]))
    after = estimator.estimate()

    # Assert
    np.testing.assert_allclose(before, [1 + _bonus(50, 1), 1 / 3 + _bonus(50, 3)])
    np.testing.assert_allclose(after, [estimator.unseen_estimate(), _bonus(50, 3)])
    assert estimator.rounds == 4


def test_multi_task_shapes_and_per_task_means() -> None:
    # Prepare
    estimator = TemporalEstimator(num_streams=3, window=2, horizon=10, num_tasks=2)
    feedback = np.array([[1.0, 0.0], [np.nan, np.nan], [0.25, 0.75]])

    # Execute
    estimator.update(np.array([True, False, True]), feedback)
    estimates = estimator.estimate()

    # Assert
    assert estimates.shape == (3, 2)
    bonus = _bonus(10, 1)
    np.testing.assert_allclose(estimates[0], [1 + bonus, bonus])
    np.testing.assert_allclose(estimates[1], estimator.unseen_estimate())
    np.testing.assert_allclose(estimates[2], [0.25 + bonus, 0.75 + bonus])


def test_without_horizon_ln_t_uses_the_current_round() -> None:
    # Prepare
    estimator = TemporalEstimator(num_streams=1, window=5)
    for _ in range(3):
        estimator.update(np.array([True]), np.array([0.0]))

    # Execute
    default = estimator.estimate()  # round 4
    explicit = estimator.estimate(t=20)

    # Assert
    np.testing.assert_allclose(default, [_bonus(4, 3)])
    np.testing.assert_allclose(explicit, [_bonus(20, 3)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # no streams to gate
        ({"num_streams": 0, "window": 3}, r"num_streams is 0; expected a positive"),
        # an empty window has no mean
        ({"num_streams": 2, "window": 0}, r"window is 0"),
        # ln T needs T >= 1
        ({"num_streams": 2, "window": 3, "horizon": 0}, r"horizon is 0"),
        # a float is not a round count
        ({"num_streams": 2, "window": 2.5}, r"window is 2.5"),
        # zero tasks
        ({"num_streams": 2, "window": 3, "num_tasks": 0}, r"num_tasks is 0"),
        # unknown mean form
        ({"num_streams": 2, "window": 3, "mean": "all"}, r"mean is 'all'; expected"),
    ],
)
def test_constructor_rejects_bad_arguments(
    kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        TemporalEstimator(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("selected", "feedback", "match"),
    [
        # feedback of a selected stream above 1
        ([True, False], [1.5, 0.0], r"feedback\[0\] of a selected stream is 1.5"),
        # NaN feedback where the stream was selected
        ([False, True], [0.0, np.nan], r"feedback\[1\] of a selected stream is nan"),
        # negative feedback of a selected stream
        ([True, True], [0.0, -0.5], r"is -0.5; expected a value in \[0, 1\]"),
        # one flag short
        ([True], [0.0, 0.0], r"selected has shape \(1,\); expected \(2,\)"),
        # flags must be booleans, not 0/1 integers (an index array would be misread)
        ([1, 0], [0.0, 0.0], r"selected has dtype int64; expected bool"),
        # multi-task shaped feedback for a single-task estimator
        (
            [True, False],
            [[0.0], [0.0]],
            r"feedback has shape \(2, 1\); expected \(2,\)",
        ),
    ],
)
def test_update_rejects_bad_inputs(
    selected: list[object], feedback: list[object], match: str
) -> None:
    # Prepare
    estimator = TemporalEstimator(num_streams=2, window=3)

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        estimator.update(np.array(selected), np.array(feedback))
    assert estimator.rounds == 0  # nothing recorded


def test_multi_task_update_names_stream_and_task() -> None:
    # Prepare
    estimator = TemporalEstimator(num_streams=2, window=3, num_tasks=2)
    feedback = np.array([[0.0, 0.5], [0.2, 3.0]])

    # Execute / Assert: task 1 of stream 1 is out of range
    with pytest.raises(
        ValueError, match=r"feedback\[1, 1\] of a selected stream is 3.0"
    ):
        estimator.update(np.array([True, True]), feedback)
