"""Operating points of InFi filters: the threshold that meets a target accuracy.

The thesis (§3.1, §3.5.2) scores a filter by two numbers on validation data:

* **inference accuracy** ``Acc``: the share of inputs whose served result is
  correct, i.e. consistent with running the model ``h`` on that input;
* **filter rate** ``r``: the share of inputs filtered (served without ``h``).

and reports the filter rate at a target accuracy (90 %), tuning the skip
threshold or the reuse setting on a grid. A point qualifies when ``Acc >=
target`` (the tables' "at 90 % accuracy"; §3.1's validity condition writes the
strict ``Acc > T_Acc``, which would reject a filter at exactly the target).

:func:`choose_skip_threshold` does it exactly for InFi-Skip (every distinct
score is a candidate); :func:`choose_threshold` is the generic form over any
candidates and any evaluation, and :func:`choose_reuse_threshold` applies it to
InFi-Reuse's ``θ_T``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecloud.exceptions import EdgecloudError
from edgecloud.infi.redundancy import PairwiseRedundancy, unchanged_result
from edgecloud.validation import check_real

Evaluate = Callable[[float], tuple[float, float]]
"""``evaluate(threshold) -> (filter_rate, accuracy)``, both in ``[0, 1]``."""

Serve = Callable[[float], tuple[npt.ArrayLike, npt.ArrayLike]]
"""``serve(theta_t) -> (served results (N,), filtered mask (N,))`` over a stream."""

# accuracies are ratios of counts: tolerate their float rounding against the target
_ROUNDING = 1e-12


class NoOperatingPointError(EdgecloudError, ValueError):
    """No candidate threshold reaches the target accuracy."""


@dataclass(frozen=True)
class OperatingPoint:
    """A filter's threshold with the filter rate and accuracy it achieves.

    Attributes
    ----------
    threshold : float
        The filter's threshold (skip: the smallest skip probability skipped,
        ``inf`` for skipping nothing; reuse: ``θ_T``).
    filter_rate : float
        Share of inputs filtered, in ``[0, 1]``.
    accuracy : float
        Inference accuracy, in ``[0, 1]``.
    """

    threshold: float
    filter_rate: float
    accuracy: float


# ---------------------------------------------------------------------- skip
def skip_operating_point(
    skip_probability: npt.ArrayLike, redundant: npt.ArrayLike, threshold: float
) -> OperatingPoint:
    """Filter rate and accuracy of InFi-Skip at one threshold.

    An input is skipped when its skip probability is ``>= threshold`` (the
    thesis' Algorithm 3.1 runs the model when ``g(x) > T``, ``g`` the probability
    of *not* redundant, so ``skip_probability = 1 - g(x)`` and ``threshold =
    1 - T``). Accuracy follows the thesis (§3.1: a result is correct when
    consistent with ``h(x)``; §3.4.3: a skipped input is served NONE, whose
    meaning is the redundancy measure's) and the authors' evaluation: an input
    run through the model is correct; a skipped input is correct exactly when it
    is truly redundant. The model's outputs enter only through ``redundant``
    (``measure(outputs)``, :mod:`edgecloud.infi.redundancy`).

    Parameters
    ----------
    skip_probability : array_like of float
        ``(N,)`` the filter's probability that each input is redundant, in
        ``[0, 1]``.
    redundant : array_like of bool
        ``(N,)`` the truth, ``f_h(h(x))`` as a redundant flag.
    threshold : float
        Skip when ``skip_probability >= threshold`` (not NaN; ``inf``: never).

    Returns
    -------
    OperatingPoint
    """
    prob, truth = _as_skip_inputs(skip_probability, redundant)
    cut = check_real("threshold", threshold)
    skipped = prob >= cut
    wrong = int((skipped & ~truth).sum())
    n = len(prob)
    return OperatingPoint(cut, float(skipped.mean()), (n - wrong) / n)


def choose_skip_threshold(
    skip_probability: npt.ArrayLike,
    redundant: npt.ArrayLike,
    target_accuracy: float,
) -> OperatingPoint:
    """The skip threshold with the largest filter rate at ``target_accuracy``.

    Every distinct skip probability is a candidate (an exact sweep, not the
    thesis' 0.01 grid): sorted by decreasing probability, skipping the first
    ``k`` inputs wrongs the non-redundant ones among them, so accuracy is
    ``1 - cumsum(non-redundant)[k] / N``; the largest ``k`` that ends on a change
    of probability and keeps the target wins. Skipping nothing (threshold
    ``inf``, accuracy 1) always qualifies. The returned threshold is the
    smallest probability skipped, the tightest threshold that skips that set.
    Accuracy as in :func:`skip_operating_point`.

    Parameters
    ----------
    skip_probability : array_like of float
        ``(N,)`` in ``[0, 1]``, ``N >= 1``.
    redundant : array_like of bool
        ``(N,)`` the truth.
    target_accuracy : float
        In ``(0, 1]``.

    Returns
    -------
    OperatingPoint
    """
    prob, truth = _as_skip_inputs(skip_probability, redundant)
    target = _check_target(target_accuracy)
    n = len(prob)
    order = np.argsort(-prob, kind="stable")
    ranked = prob[order]  # (N,) descending
    wrong = np.concatenate(([0], np.cumsum(~truth[order])))  # (N + 1,) per k skipped
    accuracy = (n - wrong) / n  # (N + 1,)
    # a threshold skips all inputs of one probability or none of them
    cuts = np.concatenate(([True], ranked[:-1] > ranked[1:], [True]))  # (N + 1,)
    feasible = cuts & (accuracy >= target - _ROUNDING)
    k = int(np.flatnonzero(feasible)[-1])
    threshold = math.inf if k == 0 else float(ranked[k - 1])
    return OperatingPoint(threshold, k / n, float(accuracy[k]))


# ---------------------------------------------------------------------- generic
def choose_threshold(
    candidates: Iterable[float], evaluate: Evaluate, target_accuracy: float
) -> OperatingPoint:
    """The candidate with the highest filter rate whose accuracy meets the target.

    Ties in filter rate go to the higher accuracy, then to the smaller threshold
    (for reuse, the smallest ``θ_T`` meeting the target).

    Parameters
    ----------
    candidates : Iterable[float]
        Thresholds to try (not NaN), at least one.
    evaluate : Evaluate
        ``threshold -> (filter_rate, accuracy)`` on validation data.
    target_accuracy : float
        In ``(0, 1]``.

    Returns
    -------
    OperatingPoint

    Raises
    ------
    NoOperatingPointError
        When no candidate reaches the target (the message gives the best one).
    ValueError
        On bad candidates, a bad target, or ``evaluate`` returning a rate or
        accuracy outside ``[0, 1]``.
    """
    target = _check_target(target_accuracy)
    thresholds = [check_real(f"candidates[{i}]", c) for i, c in enumerate(candidates)]
    if not thresholds:
        raise ValueError("candidates is empty; expected at least one threshold")
    points = []
    for threshold in sorted(thresholds):
        rate, accuracy = evaluate(threshold)
        for name, number in (("filter rate", rate), ("accuracy", accuracy)):
            if not 0.0 <= number <= 1.0:
                raise ValueError(
                    f"evaluate({threshold}) gave {name} {number}; expected a value "
                    "in [0, 1]"
                )
        points.append(OperatingPoint(threshold, float(rate), float(accuracy)))
    feasible = [p for p in points if p.accuracy >= target - _ROUNDING]
    if not feasible:
        best = max(points, key=lambda p: (p.accuracy, p.filter_rate))
        raise NoOperatingPointError(
            f"no candidate reaches accuracy {target}; the most accurate is "
            f"{best.accuracy} at threshold {best.threshold}"
        )
    # max keeps the first of equals: candidates are sorted by threshold
    return max(feasible, key=lambda p: (p.filter_rate, p.accuracy))


# ---------------------------------------------------------------------- reuse
def reuse_evaluation(
    serve: Serve,
    reference: npt.ArrayLike,
    same: PairwiseRedundancy | None = None,
) -> Evaluate:
    """Turn a stream replay ``θ_T -> (served, filtered)`` into an :data:`Evaluate`.

    Accuracy is the share of inputs whose served result can stand for the
    model's (``same.same(reference, served)``); the filter rate the share of
    inputs served from the cache.

    Parameters
    ----------
    serve : Serve
        Replays the validation stream at ``θ_T`` (for example
        :func:`edgecloud.infi.cache.reuse_stream` on a fresh cache).
    reference : array_like
        ``(N,)`` or ``(N, ...)``: the model's result on each input, stream order.
    same : PairwiseRedundancy | None
        When a served result is correct; ``None``: exact equality
        (:func:`~edgecloud.infi.redundancy.unchanged_result`).

    Returns
    -------
    Evaluate
    """
    truth: npt.NDArray[Any] = np.asarray(reference)
    if truth.ndim == 0 or len(truth) == 0:
        raise ValueError(
            f"reference has shape {truth.shape}; expected (N,) results, N >= 1"
        )
    measure = unchanged_result() if same is None else same

    def evaluate(theta_t: float) -> tuple[float, float]:
        served, filtered = serve(theta_t)
        mask: npt.NDArray[Any] = np.asarray(filtered)
        if mask.shape != (len(truth),) or mask.dtype != np.bool_:
            raise ValueError(
                f"serve({theta_t}) gave a filtered mask of {mask.dtype} {mask.shape}; "
                f"expected bool ({len(truth)},)"
            )
        results: npt.NDArray[Any] = np.asarray(served)
        if results.shape != truth.shape:
            raise ValueError(
                f"serve({theta_t}) gave served results of shape {results.shape}; "
                f"expected {truth.shape} (the shape of reference)"
            )
        correct = measure.same(truth, results)
        return float(mask.mean()), float(correct.mean())

    return evaluate


def choose_reuse_threshold(
    candidates: Iterable[float],
    serve: Serve,
    reference: npt.ArrayLike,
    target_accuracy: float,
    same: PairwiseRedundancy | None = None,
) -> OperatingPoint:
    """The ``θ_T`` with the highest filter rate whose reuse accuracy meets the target.

    :func:`choose_threshold` over :func:`reuse_evaluation`. Candidates must be
    homogeneity thresholds in ``[0, 1]``. Lower ``θ_T`` usually reuses more, but
    in a stream each miss inserts an entry and changes later lookups, so every
    candidate is replayed rather than assuming monotonicity.

    Parameters
    ----------
    candidates : Iterable[float]
        ``θ_T`` values in ``[0, 1]``.
    serve : Serve
        ``θ_T -> (served (N,), filtered (N,))`` over the validation stream.
    reference : array_like
        ``(N,)`` the model's result on each input.
    target_accuracy : float
        In ``(0, 1]``.
    same : PairwiseRedundancy | None
        When a served result is correct (default: exact equality).

    Returns
    -------
    OperatingPoint
    """
    thetas = [check_real(f"candidates[{i}]", c) for i, c in enumerate(candidates)]
    for i, theta in enumerate(thetas):
        if not 0.0 <= theta <= 1.0:
            raise ValueError(
                f"candidates[{i}] is {theta}; expected a homogeneity threshold "
                "in [0, 1]"
            )
    evaluate = reuse_evaluation(serve, reference, same)
    return choose_threshold(thetas, evaluate, target_accuracy)


# ---------------------------------------------------------------------- validation
def _check_target(value: object) -> float:
    """``value`` as a float in ``(0, 1]``, or a ValueError."""
    target = check_real("target_accuracy", value)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target_accuracy is {target}; expected a value in (0, 1]")
    return target


def _as_skip_inputs(
    skip_probability: npt.ArrayLike, redundant: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Validated ``(N,)`` probabilities in [0, 1] and ``(N,)`` bool truth, N >= 1."""
    raw: npt.NDArray[Any] = np.asarray(skip_probability)
    if raw.ndim != 1 or len(raw) == 0:
        raise ValueError(
            f"skip_probability has shape {raw.shape}; expected (N,), N >= 1"
        )
    if raw.dtype.kind not in "iuf":
        raise ValueError(
            f"skip_probability has dtype {raw.dtype}; expected probabilities"
        )
    prob = raw.astype(np.float64)
    bad = ~((prob >= 0.0) & (prob <= 1.0))  # NaN included
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"skip_probability[{index}] is {prob[index]}; expected a probability "
            "in [0, 1]"
        )
    truth: npt.NDArray[Any] = np.asarray(redundant)
    if truth.shape != prob.shape:
        raise ValueError(
            f"redundant has shape {truth.shape}; expected {prob.shape} "
            "(one flag per skip probability)"
        )
    if truth.dtype != np.bool_:
        raise ValueError(f"redundant has dtype {truth.dtype}; expected bool")
    return prob, truth
