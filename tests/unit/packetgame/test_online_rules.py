"""Redundancy functions, the served-result rule and the baseline policies' choices."""

from __future__ import annotations

import numpy as np
import pytest

from edgecloud.packetgame.online import (
    DEFAULT_RESULT,
    RoundInputs,
    count_changed,
    event_present,
    previous_result,
    resize_frames,
    serve,
)
from edgecloud.packetgame.policies import (
    DecodeAll,
    KeyframesPolicy,
    OraclePolicy,
    RandomPolicy,
    ReductoPolicy,
    UniformPolicy,
    make_policy,
    uniform_stride,
)


def _inputs(
    costs: list[float],
    budget: float,
    frame_index: list[int] | None = None,
    random_access: list[bool] | None = None,
    previous: list[int] | None = None,
) -> RoundInputs:
    m = len(costs)
    cost = np.array(costs)
    return RoundInputs(
        round=0,
        sizes=np.full(m, 1000.0),
        is_intra=np.zeros(m, dtype=bool),
        random_access=np.array(random_access or [False] * m),
        frame_index=np.array(frame_index or list(range(m)), dtype=np.int64),
        active=np.ones(m, dtype=bool),
        costs=cost,
        own_costs=np.where(np.isfinite(cost), cost, 1.0),
        dependency_costs=[np.zeros(0) for _ in range(m)],
        previous_results=np.array(previous or [0] * m, dtype=np.int64),
        budget=budget,
    )


@pytest.mark.parametrize(
    ("result", "last", "expected"),
    [
        (3, 3, 0.0),  # same count: decoding changed nothing
        (4, 3, 1.0),  # the count changed: decoding was necessary
        (0, 2, 1.0),  # a drop to zero is a change too
    ],
)
def test_count_changed(result: int, last: int, expected: float) -> None:
    assert count_changed(result, last) == expected


@pytest.mark.parametrize(
    ("result", "last", "expected"),
    [
        (0, 0, 0.0),  # no event
        (2, 2, 1.0),  # an event, even a repeated one
        (0, 3, 0.0),  # the event ended: nothing to report
    ],
)
def test_event_present(result: int, last: int, expected: float) -> None:
    assert event_present(result, last) == expected


def test_serve_carries_the_latest_decoded_result_forward() -> None:
    # Prepare: 8 frames arriving one per round; frames 2 and 5 decoded on arrival
    arrival = np.arange(8)
    decoded = {2: 7, 5: 9}

    # Execute
    served, without = serve(arrival, decoded, {2: 2, 5: 5}, default=-1)

    # Assert: the default before the first decoded frame, then carried forward
    np.testing.assert_array_equal(served, [-1, -1, 7, 7, 7, 9, 9, 9])
    np.testing.assert_array_equal(without, [-1, -1, -1, 7, 7, 7, 9, 9])


def test_serve_never_serves_a_frame_decoded_after_the_frame_arrived() -> None:
    # Prepare: frame 3 decoded in round 6 (a dependency of frame 6): too late
    # for frames 3..5, which arrived in rounds 3..5
    arrival = np.arange(8)
    decoded = {0: 1, 3: 4, 6: 5}
    rounds = {0: 0, 3: 6, 6: 6}

    # Execute
    served, _ = serve(arrival, decoded, rounds)

    # Assert
    np.testing.assert_array_equal(served, [1, 1, 1, 1, 1, 1, 5, 5])


def test_serve_follows_arrival_not_display_order() -> None:
    # Prepare: B-frame reordering: display 2 arrives (round 1) before display 1
    # (round 2); display 2 decoded on arrival serves display 2 only
    arrival = np.array([0, 2, 1, -1])  # frame 3 never arrived
    decoded = {0: 3, 2: 8}
    rounds = {0: 0, 2: 1}

    # Execute
    served, _ = serve(arrival, decoded, rounds, default=0)

    # Assert: display 1 gets display 0's result (display 2 is later in display
    # order); the frame that never arrived gets the default
    np.testing.assert_array_equal(served, [3, 3, 8, 0])


def test_serve_without_decoded_frames_is_the_default() -> None:
    served, without = serve(np.arange(3), {}, {})
    np.testing.assert_array_equal(served, [DEFAULT_RESULT] * 3)
    np.testing.assert_array_equal(without, [DEFAULT_RESULT] * 3)


@pytest.mark.parametrize(
    ("frame_index", "expected"),
    [
        (0, DEFAULT_RESULT),  # nothing before frame 0
        (2, DEFAULT_RESULT),  # frame 2 itself does not count
        (3, 7),  # frame 2 serves frame 2
        (9, 9),  # the latest decoded before 9 is 5
    ],
)
def test_previous_result(frame_index: int, expected: int) -> None:
    assert previous_result([2, 5], {2: 7, 5: 9}, frame_index) == expected


def test_resize_frames_keeps_or_rescales() -> None:
    # Prepare
    frames = np.random.default_rng(0).integers(0, 256, (2, 12, 16, 3), np.uint8)

    # Execute
    same = resize_frames(frames, (16, 12))
    half = resize_frames(frames, (8, 6))

    # Assert
    assert same is frames
    assert half.shape == (2, 6, 8, 3) and half.dtype == np.uint8


def test_random_never_chooses_undecodable_packets_and_keeps_the_budget() -> None:
    # Prepare
    inputs = _inputs([1.0, np.inf, 2.0, 1.5, np.inf], budget=3.0)
    policy = RandomPolicy(seed=1)

    # Execute
    selections = [policy.decide(inputs) for _ in range(20)]

    # Assert
    for s in selections:
        assert not s.chosen[[1, 4]].any()
        assert s.spent <= 3.0
        assert s.spent == pytest.approx(inputs.costs[s.chosen].sum())


def test_decode_all_ignores_the_budget() -> None:
    # Prepare
    inputs = _inputs([4.0, 1.0, np.inf], budget=0.0)

    # Execute
    selection = DecodeAll().decide(inputs)

    # Assert
    np.testing.assert_array_equal(selection.chosen, [True, True, False])
    assert selection.spent == 5.0


def test_uniform_takes_frames_on_the_stride_only() -> None:
    # Prepare: frames 0, 3, 4, 6; stride 3
    inputs = _inputs([1.0] * 4, budget=10.0, frame_index=[0, 3, 4, 6])

    # Execute
    selection = UniformPolicy(3).decide(inputs)

    # Assert
    np.testing.assert_array_equal(selection.chosen, [True, True, False, True])


@pytest.mark.parametrize(
    ("budget", "mean_cost", "streams", "expected"),
    [
        (10.0, 1.0, 10, 1),  # the budget covers every frame
        (5.0, 1.0, 10, 2),  # half of it: every second frame
        (3.0, 1.0, 10, 4),  # rounded up, so the stride fits on average
    ],
)
def test_uniform_stride(
    budget: float, mean_cost: float, streams: int, expected: int
) -> None:
    assert uniform_stride(budget, mean_cost, streams) == expected


def test_keyframes_takes_random_access_packets_only() -> None:
    # Prepare
    inputs = _inputs([4.0, 1.0, 4.0], budget=10.0, random_access=[True, False, True])

    # Execute
    selection = KeyframesPolicy().decide(inputs)

    # Assert
    np.testing.assert_array_equal(selection.chosen, [True, False, True])


def test_the_oracle_prefers_packets_that_change_the_result() -> None:
    # Prepare: stream 1's frame changes the result (5 after 3); stream 0's does not
    references = [np.array([3, 3]), np.array([3, 5])]
    inputs = _inputs([1.0, 2.0], budget=2.0, frame_index=[1, 1], previous=[3, 3])
    policy = OraclePolicy(references)

    # Execute
    selection = policy.decide(inputs)

    # Assert: the cheaper redundant packet loses to the necessary one
    np.testing.assert_array_equal(selection.chosen, [False, True])


def test_reducto_skips_inference_on_near_identical_frames() -> None:
    # Prepare
    policy = ReductoPolicy(threshold=0.05)
    dark = np.zeros((4, 4, 3), np.uint8)
    almost = np.full((4, 4, 3), 5, np.uint8)  # 2 % brighter
    bright = np.full((4, 4, 3), 200, np.uint8)

    # Execute
    decisions = [policy.should_infer(0, f) for f in (dark, almost, bright)]

    # Assert: the first frame is always inferred
    assert decisions == [True, False, True]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nonsense", "'nonsense' unknown"),  # invalid: not a policy
        ("oracle", "expected references"),  # invalid: the oracle needs them
        ("uniform", "expected budget and costs"),  # invalid: no stride source
        ("packetgame", "expected a predictor"),  # invalid: no trained predictor
    ],
)
def test_make_policy_refuses_bad_requests(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_policy(name, 3)
