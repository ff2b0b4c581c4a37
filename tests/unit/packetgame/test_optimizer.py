"""Greedy selection (Algorithm 2.1, corrected) against the exact knapsack optimum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgecloud.packetgame import exact_select, greedy_select
from edgecloud.packetgame.optimizer import MAX_EXACT_CELLS


def _random_dependencies(
    rng: np.random.Generator, costs: np.ndarray
) -> list[np.ndarray]:
    """Per stream, integer costs of the packets it depends on (sum < its cost)."""
    deps = []
    for cost in costs.astype(int):
        rest = cost - int(rng.integers(1, cost + 1))  # the packet's own cost >= 1
        parts = []
        while rest > 0:
            parts.append(int(rng.integers(1, rest + 1)))
            rest -= parts[-1]
        deps.append(np.array(parts, dtype=float))
    return deps


def _brute_force(values: np.ndarray, costs: np.ndarray, budget: float) -> float:
    best = 0.0
    for mask in itertools.product([False, True], repeat=len(values)):
        chosen = np.array(mask)
        if costs[chosen].sum() <= budget:
            best = max(best, float(values[chosen].sum()))
    return best


def test_greedy_meets_lemma_2_1_bound_on_random_instances() -> None:
    # Prepare
    rng = np.random.default_rng(2024)
    checked = prefetched = 0

    for _ in range(1500):
        m = int(rng.integers(2, 13))
        c = int(rng.integers(1, 11))
        costs = rng.integers(1, c + 1, m).astype(float)
        budget = float(rng.integers(c, 5 * c + 1))
        # rounded values make ties, which the stable sort must handle
        values = np.round(rng.random(m), 1)
        deps = _random_dependencies(rng, costs)

        # Execute
        greedy = greedy_select(values, costs, budget, deps)
        exact = exact_select(values, costs, budget)

        # Assert
        greedy_value = float(values[greedy.chosen].sum())
        exact_value = float(values[exact.chosen].sum())
        bound = 1.0 - costs.max() / budget
        assert greedy_value >= bound * exact_value - 1e-12
        assert greedy_value <= exact_value + 1e-12
        assert costs[exact.chosen].sum() <= budget
        whole = float(costs[greedy.chosen].sum())
        assert whole <= greedy.spent <= budget
        # whole-packet phase: a prefix of the value-per-cost ranking
        order = np.argsort(-(values / costs), kind="stable")
        taken = int(greedy.chosen.sum())
        assert greedy.chosen[order[:taken]].all()
        if taken < m:
            stream = int(order[taken])
            assert whole + costs[stream] > budget  # it did not fit
            left = budget - whole
            if greedy.prefetch is None:
                assert deps[stream].size == 0 or deps[stream][0] > left
                assert greedy.spent == whole
            else:
                assert greedy.prefetch[0] == stream
                prefetched += 1
                count = greedy.prefetch[1]
                assert greedy.spent == pytest.approx(whole + deps[stream][:count].sum())
                # the longest prefix that fits
                assert count == deps[stream].size or (
                    deps[stream][: count + 1].sum() > left
                )
        else:
            assert greedy.prefetch is None
        checked += 1

    assert checked == 1500
    assert prefetched > 100  # the prefetch phase was exercised


def test_thesis_loop_would_overshoot_but_greedy_does_not() -> None:
    # Prepare: Algorithm 2.1's `while b < B` would take both packets (b = 4 > 3)
    values = np.array([1.0, 1.0])
    costs = np.array([2.0, 2.0])

    # Execute
    selection = greedy_select(values, costs, 3.0)

    # Assert
    assert selection.chosen.tolist() == [True, False]
    assert selection.spent == 2.0
    assert selection.prefetch is None


def test_first_non_fitting_packet_stops_the_whole_packet_phase() -> None:
    # Prepare: stream 1 ranks second but does not fit; stream 2 would fit after it
    values = np.array([4.0, 3.0, 0.1])
    costs = np.array([2.0, 3.0, 1.0])
    deps = [np.array([]), np.array([1.0, 1.0]), np.array([])]

    # Execute
    selection = greedy_select(values, costs, 4.0, deps)

    # Assert: the remaining 2 units prefetch both dependencies of stream 1
    assert selection.chosen.tolist() == [True, False, False]
    assert selection.prefetch == (1, 2)
    assert selection.spent == 4.0


def test_ties_are_broken_by_stream_index() -> None:
    # Prepare
    values = np.array([1.0, 2.0, 1.0, 2.0])
    costs = np.array([1.0, 2.0, 1.0, 2.0])  # all ratios 1

    # Execute
    selection = greedy_select(values, costs, 3.0)

    # Assert: ranking 0, 1, 2, 3; 0 and 1 fit (3), then 2 does not
    assert selection.chosen.tolist() == [True, True, False, False]


def test_budget_below_every_cost_chooses_nothing_but_may_prefetch() -> None:
    # Prepare
    values = np.array([0.9, 0.1])
    costs = np.array([5.0, 4.0])
    deps = [np.array([2.0, 1.0]), np.array([3.0])]

    # Execute
    selection = greedy_select(values, costs, 3.5, deps)
    plain = greedy_select(values, costs, 3.5)

    # Assert
    assert not selection.chosen.any()
    assert selection.prefetch == (0, 2)
    assert selection.spent == 3.0
    assert not plain.chosen.any() and plain.prefetch is None and plain.spent == 0.0


def test_everything_fits_and_empty_instance() -> None:
    # Execute
    full = greedy_select([0.5, 0.2], [1.0, 1.0], 10.0, [np.array([]), np.array([])])
    empty = greedy_select([], [], 1.0)

    # Assert
    assert full.chosen.all() and full.prefetch is None and full.spent == 2.0
    assert empty.chosen.shape == (0,) and empty.spent == 0.0


def test_exact_select_matches_brute_force() -> None:
    # Prepare
    rng = np.random.default_rng(7)
    for _ in range(100):
        m = int(rng.integers(1, 9))
        costs = rng.integers(1, 6, m).astype(float)
        values = rng.random(m)
        budget = float(rng.integers(0, 15))

        # Execute
        exact = exact_select(values, costs, budget)

        # Assert
        assert float(values[exact.chosen].sum()) == pytest.approx(
            _brute_force(values, costs, budget)
        )
        assert exact.spent <= budget and exact.prefetch is None


@pytest.mark.parametrize(
    ("values", "costs", "budget", "dependency_costs", "match"),
    [
        # negative value: confidences are >= 0
        ([0.5, -0.1], [1.0, 1.0], 1.0, None, r"values\[1\] is -0.1"),
        # NaN value: the ranking would be undefined
        ([np.nan, 0.1], [1.0, 1.0], 1.0, None, r"values\[0\] is nan"),
        # zero cost: value per cost divides by it
        (
            [0.5, 0.1],
            [1.0, 0.0],
            1.0,
            None,
            r"costs\[1\] is 0.0; expected a finite number > 0",
        ),
        # negative cost
        ([0.5, 0.1], [-2.0, 1.0], 1.0, None, r"costs\[0\] is -2.0"),
        # NaN cost
        ([0.5, 0.1], [1.0, np.nan], 1.0, None, r"costs\[1\] is nan"),
        # negative budget
        ([0.5], [1.0], -1.0, None, r"budget is -1.0; expected a finite number >= 0"),
        # NaN budget
        ([0.5], [1.0], np.nan, None, r"budget is nan"),
        # values and costs of different lengths
        (
            [0.5, 0.2, 0.1],
            [1.0, 1.0],
            1.0,
            None,
            r"values has shape \(3,\); expected \(2,\)",
        ),
        # costs not a vector
        ([0.5], [[1.0]], 1.0, None, r"costs has shape \(1, 1\); expected \(m,\)"),
        # one dependency list per stream is required
        (
            [0.5, 0.2],
            [1.0, 1.0],
            1.0,
            [np.array([])],
            r"dependency_costs has 1 entries; expected 2",
        ),
        # dependencies cannot cost as much as the packet including them
        (
            [0.5, 0.2],
            [1.0, 3.0],
            1.0,
            [np.array([]), np.array([2.0, 1.0])],
            r"dependency_costs\[1\] sums to 3.0",
        ),
        # negative dependency cost
        (
            [0.5, 0.2],
            [1.0, 3.0],
            1.0,
            [np.array([]), np.array([-1.0])],
            r"dependency_costs\[1\]\[0\] is -1.0",
        ),
    ],
)
def test_greedy_rejects_bad_inputs(
    values: list[float],
    costs: list[float],
    budget: float,
    dependency_costs: list[np.ndarray] | None,
    match: str,
) -> None:
    with pytest.raises(ValueError, match=match):
        greedy_select(values, costs, budget, dependency_costs)


@pytest.mark.parametrize(
    ("costs", "budget", "match"),
    [
        # fractional costs have no DP over integer budgets
        ([1.5, 1.0], 2.0, r"costs\[0\] is 1.5; exact_select expected integer costs"),
        # the table would exceed MAX_EXACT_CELLS
        ([1.0, 1.0], float(MAX_EXACT_CELLS), r"table cells .* expected at most"),
        # the shared checks apply too
        ([0.0, 1.0], 2.0, r"costs\[0\] is 0.0"),
    ],
)
def test_exact_rejects_bad_or_too_large_instances(
    costs: list[float], budget: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        exact_select([0.5, 0.5], costs, budget)
