"""Combinatorial optimizer: which packets to decode under a budget (PacketGame §2.4.3).

Per round, stream ``i`` offers one packet with value ``v_i`` (the predicted
confidence that decoding it is necessary) and dependency-aware cost ``c_i`` (its own
calibrated decode cost plus that of every undecoded packet it depends on). Choosing
packets of largest total value with total cost at most ``B`` is a 0/1 knapsack
problem. :func:`greedy_select` is the thesis' Algorithm 2.1 (lines 8-15), corrected,
and :func:`exact_select` an exact solver for small instances (tests and baselines).

Lemma 2.1 states ``greedy >= (1 - c / B) * optimum`` with ``c`` the largest single
cost. Its proof holds for the 0/1 optimum too: the greedy prefix has value at least
``(B - b) r`` (``b`` the budget left, ``r`` the value per cost of the first packet
that did not fit, ``b < c``), and the fractional optimum, an upper bound on the 0/1
one, is at most the greedy value plus ``b r``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgecloud.packetgame.validation_utils import as_nonnegative, check_budget

# exact_select refuses dynamic programmes with more table cells than this (~80 MB
# of float64 values plus a boolean table of the same shape).
MAX_EXACT_CELLS = 10_000_000


@dataclass(frozen=True, eq=False)
class Selection:
    """One round's decision for ``m`` streams.

    Attributes
    ----------
    chosen : numpy.ndarray
        ``(m,)`` bool: decode this round's packet of these streams (each with its
        undecoded dependencies, as its cost says).
    prefetch : tuple[int, int] | None
        ``(stream, n)``: also decode the first ``n`` packets (in decode order) that
        the first packet which did not fit depends on, so that it is cheaper in the
        next round; ``None`` when nothing is prefetched.
    spent : float
        Total decode cost of the chosen packets and the prefetched dependencies;
        never above the budget.
    """

    chosen: npt.NDArray[np.bool_]
    prefetch: tuple[int, int] | None
    spent: float


def _check_inputs(
    values: npt.ArrayLike, costs: npt.ArrayLike, budget: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    cost_arr = as_nonnegative("costs", costs, positive=True)
    if cost_arr.ndim != 1:
        raise ValueError(f"costs has shape {cost_arr.shape}; expected (m,)")
    value_arr = as_nonnegative("values", values, cost_arr.shape)
    return value_arr, cost_arr, check_budget(budget)


def greedy_select(
    values: npt.ArrayLike,
    costs: npt.ArrayLike,
    budget: float,
    dependency_costs: Sequence[npt.ArrayLike] | None = None,
) -> Selection:
    """Algorithm 2.1 (lines 8-15), corrected: greedy by value per cost, then prefetch.

    1. Sort the streams by ``values / costs``, descending (stable: ties keep the
       lower stream index first).
    2. Take whole packets in that order while their cumulative cost fits the budget.
       The first packet that does not fit ends this phase, as in the thesis (later,
       cheaper packets are not scanned; the ``1 - c / B`` bound holds either way).
       Corrections to the thesis' loop (lines 10-14): ``while b_t < B`` adds one
       packet past the budget (here the spent cost never exceeds ``B``), it runs
       past the last stream when every packet fits (here it stops at ``m``), and
       line 12 adds ``c_{t,i}``, a stale index, where the cost of ``P_t[k]`` is
       meant.
    3. Spend what is left on the longest prefix, in decode order, of the dependency
       costs of that first packet that did not fit (line 15: "decode as many of the
       packets it depends on as possible"), so that it is cheaper next round.

    A budget below every cost is not an error: nothing is chosen (a prefix of the
    first-ranked packet's dependencies may still be prefetched).

    Parameters
    ----------
    values : array_like
        ``(m,)`` finite values >= 0 (e.g. predicted confidences).
    costs : array_like
        ``(m,)`` finite dependency-aware decode costs > 0.
    budget : float
        Decode budget ``B`` of the round, finite and >= 0.
    dependency_costs : Sequence of array_like, optional
        ``m`` one-dimensional arrays: for each stream, the costs of the undecoded
        packets its current packet depends on, in decode order (excluding its own
        cost, so each sums to less than ``costs[i]``). Only the entry of the first
        packet that did not fit is read and checked, keeping the round O(m log m)
        in numpy. ``None``: no prefetch.

    Returns
    -------
    Selection
        The chosen packets, the prefetch and the cost spent (<= ``budget``).

    Raises
    ------
    ValueError
        On negative, NaN or infinite values or costs, costs <= 0, a negative or
        non-finite budget, or mismatched shapes, naming the argument.
    """
    value_arr, cost_arr, budget_f = _check_inputs(values, costs, budget)
    m = cost_arr.shape[0]
    if dependency_costs is not None and len(dependency_costs) != m:
        raise ValueError(
            f"dependency_costs has {len(dependency_costs)} entries; "
            f"expected {m} (one per stream)"
        )
    # whole-packet phase: the longest prefix of the ranking whose cost fits
    order = np.argsort(-(value_arr / cost_arr), kind="stable")  # (m,)
    cumulative = np.cumsum(cost_arr[order])  # (m,)
    taken = int(np.searchsorted(cumulative, budget_f, side="right"))
    chosen = np.zeros(m, dtype=bool)
    chosen[order[:taken]] = True
    spent = float(cumulative[taken - 1]) if taken else 0.0
    # prefetch phase: the next packet's dependencies, as many as the rest allows
    prefetch: tuple[int, int] | None = None
    if dependency_costs is not None and taken < m:
        stream = int(order[taken])
        deps = _dependency_prefix(stream, dependency_costs[stream], cost_arr[stream])
        # spent + cumsum, not cumsum <= budget - spent: immune to rounding up
        totals = spent + np.cumsum(deps)
        count = int(np.searchsorted(totals, budget_f, side="right"))
        if count:
            prefetch = (stream, count)
            spent = float(totals[count - 1])
    assert spent <= budget_f, (spent, budget_f)
    return Selection(chosen=chosen, prefetch=prefetch, spent=spent)


def _dependency_prefix(
    stream: int, deps: npt.ArrayLike, cost: float
) -> npt.NDArray[np.float64]:
    name = f"dependency_costs[{stream}]"
    arr = as_nonnegative(name, deps)
    if arr.ndim != 1:
        raise ValueError(f"{name} has shape {arr.shape}; expected (n,)")
    if arr.size and float(arr.sum()) >= cost:
        raise ValueError(
            f"{name} sums to {float(arr.sum())}; expected less than costs[{stream}] = "
            f"{cost} (the dependency-aware cost includes the packet's own cost)"
        )
    return arr


def exact_select(
    values: npt.ArrayLike, costs: npt.ArrayLike, budget: float
) -> Selection:
    """Exact 0/1 knapsack by dynamic programming over the budget (small instances).

    Parameters
    ----------
    values : array_like
        ``(m,)`` finite values >= 0.
    costs : array_like
        ``(m,)`` integer costs >= 1 (floats with integral values are accepted).
    budget : float
        Budget ``B`` >= 0; only its integer part matters with integer costs.

    Returns
    -------
    Selection
        An optimal choice (never a prefetch); among optimal sets, the DP keeps the
        earlier stream whenever taking a later one does not strictly improve.

    Raises
    ------
    ValueError
        On the inputs :func:`greedy_select` refuses, non-integral costs, or an
        instance whose table ``m * (floor(B) + 1)`` exceeds ``MAX_EXACT_CELLS``.
    """
    value_arr, cost_arr, budget_f = _check_inputs(values, costs, budget)
    fractional = cost_arr != np.round(cost_arr)
    if fractional.any():
        i = int(np.argmax(fractional))
        raise ValueError(
            f"costs[{i}] is {cost_arr[i]}; exact_select expected integer costs"
        )
    m = cost_arr.shape[0]
    capacity = int(np.floor(budget_f))
    if m * (capacity + 1) > MAX_EXACT_CELLS:
        raise ValueError(
            f"exact_select instance has m * (budget + 1) = {m * (capacity + 1)} "
            f"table cells (m = {m}, budget = {budget_f}); expected at most "
            f"{MAX_EXACT_CELLS}: use greedy_select"
        )
    int_costs = cost_arr.astype(np.int64)
    best = np.zeros(capacity + 1)  # best[b]: best value with capacity b
    took = np.zeros((m, capacity + 1), dtype=bool)  # (m, B + 1)
    for i in range(m):
        c = int(int_costs[i])
        if c > capacity:
            continue
        candidate = best[: capacity + 1 - c] + value_arr[i]  # take i at capacity b
        better = candidate > best[c:]
        took[i, c:] = better
        best[c:] = np.where(better, candidate, best[c:])
    # walk back from the full capacity
    chosen = np.zeros(m, dtype=bool)
    b = capacity
    for i in range(m - 1, -1, -1):
        if took[i, b]:
            chosen[i] = True
            b -= int(int_costs[i])
    return Selection(chosen=chosen, prefetch=None, spent=float(cost_arr[chosen].sum()))
