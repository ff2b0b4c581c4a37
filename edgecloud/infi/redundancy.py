"""Redundancy measures ``f_h`` on a black box's outputs (InFi, thesis §3.1–§3.2).

Definition 3.1 of the thesis: a redundancy measure ``f_h`` takes only the outputs of
the inference model ``h`` (never the ground truth) and says whether running ``h``
was redundant. The skip filter is trained on ``z = f_h(h(x))``; the reuse filter on
pairs labelled ``1(y_i != y_j)``. Here every measure maps a batch of outputs to a
boolean array ``redundant`` of shape ``(N,)`` (True: the inference was useless,
so skipping it costs no accuracy), the opposite polarity of the thesis' ``z``
(``z = 1``: not redundant):

* :func:`zero_count` — a count of 0 (face/person/vehicle detection, §3.5.2);
* :func:`class_subset` — a class outside the useful subset ``Y'`` (§3.2.3);
* :func:`confidence_threshold` — a classification not confident enough (§3.2.2);
* :func:`bounded_regression` — a regression value not above ``T`` (§3.2.4);
* :func:`unchanged_result` — pairwise, for reuse: a cached result equal to the new
  one (§3.1, ``f_h(y) = 1(y not in Y_cached)``).

:func:`redundant_share` gives ``r_N``, the share of truly redundant inputs, and
:func:`optimal_filter_rate` the best filter rate any filter can reach at a target
accuracy (the "optimal" rows of tables 3.2 and 3.3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]


@runtime_checkable
class Redundancy(Protocol):
    """A redundancy measure ``f_h``: outputs of ``h`` -> redundant flags ``(N,)``."""

    def __call__(self, outputs: npt.ArrayLike) -> BoolArray:
        """True where running the model on that input was redundant.

        Parameters
        ----------
        outputs : array_like
            A batch of the black box's outputs, first axis ``N`` (one per input).

        Returns
        -------
        numpy.ndarray
            ``(N,)`` bool.
        """


@runtime_checkable
class PairwiseRedundancy(Protocol):
    """A pairwise measure for reuse: may result ``b`` be served in place of ``a``."""

    def same(self, a: npt.ArrayLike, b: npt.ArrayLike) -> BoolArray:
        """True where ``b[i]`` may be served to the input whose true result is ``a[i]``.

        Parameters
        ----------
        a, b : array_like
            Two batches of outputs of the same shape, first axis ``N``.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` bool.
        """


# ---------------------------------------------------------------------- measures
@dataclass(frozen=True)
class _ZeroCount:
    def __call__(self, outputs: npt.ArrayLike) -> BoolArray:
        counts = _as_integers("outputs", outputs, "count")
        if counts.size and counts.min() < 0:
            index = int(np.argmax(counts < 0))
            raise ValueError(
                f"outputs[{index}] is {counts[index]}; expected a count >= 0"
            )
        redundant: BoolArray = counts == 0
        return redundant


@dataclass(frozen=True)
class _ClassSubset:
    useful: frozenset[int]

    def __call__(self, outputs: npt.ArrayLike) -> BoolArray:
        classes = _as_integers("outputs", outputs, "class index")
        useful = np.fromiter(self.useful, dtype=np.int64, count=len(self.useful))
        redundant: BoolArray = ~np.isin(classes, useful)
        return redundant


@dataclass(frozen=True)
class _ConfidenceThreshold:
    threshold: float

    def __call__(self, outputs: npt.ArrayLike) -> BoolArray:
        probs = _as_finite("outputs", outputs, ndim=2, what="(N, C) probabilities")
        if probs.shape[1] == 0:
            raise ValueError(
                f"outputs has shape {probs.shape}; expected (N, C) with C >= 1"
            )
        bad = (probs < 0.0) | (probs > 1.0)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"outputs[{row}, {col}] is {probs[row, col]}; "
                "expected a probability in [0, 1]"
            )
        # the thesis' f_h(y) = sign(y > t): only a confidence above t is acted on
        redundant: BoolArray = probs.max(axis=1) <= self.threshold
        return redundant


@dataclass(frozen=True)
class _BoundedRegression:
    low: float
    high: float

    def __call__(self, outputs: npt.ArrayLike) -> BoolArray:
        values = _as_finite("outputs", outputs, ndim=1, what="(N,) regression values")
        useful = (values > self.low) & (values <= self.high)
        redundant: BoolArray = ~useful
        return redundant


@dataclass(frozen=True)
class _UnchangedResult:
    tolerance: float

    def same(self, a: npt.ArrayLike, b: npt.ArrayLike) -> BoolArray:
        first = _as_results("a", a)
        second = _as_results("b", b)
        if first.shape != second.shape:
            raise ValueError(
                f"b has shape {second.shape}; expected {first.shape} (the shape of a)"
            )
        if self.tolerance == 0.0:
            equal = first == second
        else:
            equal = np.abs(first.astype(np.float64) - second) <= self.tolerance
        # a multi-valued result (coordinates) is reusable when every entry is
        same: BoolArray = equal.reshape(len(first), -1).all(axis=1)
        return same


# ---------------------------------------------------------------------- factories
def zero_count() -> Redundancy:
    """A count output of 0 is redundant (nothing detected: nothing to act on).

    The thesis' face detector example (§3.1, ``y -> 1(|y| > 0)``) and its FD, PE,
    VC and VC-MP tasks (§3.5.2); the same as ``bounded_regression(0)`` restricted
    to integer counts.

    Returns
    -------
    Redundancy
        Takes ``(N,)`` integer counts ``>= 0``.
    """
    return _ZeroCount()


def class_subset(useful: Iterable[int]) -> Redundancy:
    """A predicted class outside the useful subset ``Y'`` is redundant.

    Thesis §3.2.3: ``f_h(y) = 1(y in Y')`` is the *non*-redundant flag, with ``Y'``
    the classes the application uses (its filter hypothesis is the max over the
    useful classes' scores; the AC task: "outputs not in the subclass Sub are
    redundant").

    Parameters
    ----------
    useful : Iterable[int]
        The useful class indices, non-empty, each ``>= 0``.

    Returns
    -------
    Redundancy
        Takes ``(N,)`` integer class indices.
    """
    classes = list(useful)
    if not classes:
        raise ValueError(f"useful is {classes!r}; expected at least one class")
    for cls in classes:
        if isinstance(cls, bool) or not isinstance(cls, int | np.integer) or cls < 0:
            raise ValueError(
                f"useful contains {cls!r}; expected class indices (integers >= 0)"
            )
    return _ClassSubset(frozenset(int(c) for c in classes))


def confidence_threshold(threshold: float) -> Redundancy:
    """A classification whose top probability is not above ``threshold`` is redundant.

    Thesis §3.2.2: ``f_h(y) = sign(y > t)``, the result is acted on only when the
    model is confident enough; a top probability exactly at ``t`` is redundant, as
    in that formula (§3.5.2's prose, "below the threshold", leaves the tie open).
    Lemma 3.2 shows this task is *not* filterable: expect low filter rates.

    Parameters
    ----------
    threshold : float
        ``t`` in ``[0, 1]`` (the thesis' GC and SC tasks use 0.9).

    Returns
    -------
    Redundancy
        Takes ``(N, C)`` class probabilities in ``[0, 1]`` (rows need not sum to
        1: sigmoid scores and a binary classifier's ``(N, 1)`` confidence work).
    """
    value = _check_number("threshold", threshold)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold is {value}; expected a probability in [0, 1]")
    return _ConfidenceThreshold(value)


def bounded_regression(low: float, high: float = math.inf) -> Redundancy:
    """A regression value not in ``(low, high]`` is redundant.

    Thesis §3.2.4 defines the measure with one bound: ``f_h(y) = 1(y > T)`` is the
    non-redundant flag, so a value ``y <= T`` is redundant (its experiments use
    ``T = 0`` on detection counts: a count of 0 is redundant, a count of 1 is
    not). That is ``bounded_regression(T)``: the lower bound is *exclusive*.
    ``high`` adds the upper bound of the section's example (face coordinates must
    lie within a given range), inclusive; the default ``inf`` is the thesis' form.
    ("Bounded" in the thesis refers to the model's error bound
    ``|h(x) - c(x)| <= M > T``, which makes the task filterable, not to this
    measure.)

    Parameters
    ----------
    low : float
        ``T``: values ``<= low`` are redundant (finite).
    high : float
        Values ``> high`` are redundant; ``> low`` (``inf``: no upper bound).

    Returns
    -------
    Redundancy
        Takes ``(N,)`` finite regression values.
    """
    lo = _check_number("low", low)
    hi = _check_number("high", high, allow_inf=True)
    if not math.isfinite(lo):
        raise ValueError(f"low is {lo}; expected a finite number")
    if not hi > lo:
        raise ValueError(f"high is {hi}; expected a number > low ({lo})")
    return _BoundedRegression(lo, hi)


def unchanged_result(tolerance: float = 0.0) -> PairwiseRedundancy:
    """Reuse is correct when the reused result equals the true one.

    Thesis §3.1: for reuse, the inference is redundant when its result is already
    cached, ``f_h(y) = 1(y not in Y_cached)``; the reuse filter is trained on pairs
    labelled ``1(y_i != y_j)`` (§3.4.3). §3.2.4 (discussion 2) requires discrete
    results: exact equality for classes and counts; a regression result can be
    reused when it is within ``tolerance`` of the true one (a discretisation).

    Parameters
    ----------
    tolerance : float
        ``0`` (default): exact equality. ``> 0``: ``|a - b| <= tolerance``, in every
        entry of a multi-valued result.

    Returns
    -------
    PairwiseRedundancy
        ``same(a, b)`` on outputs of shape ``(N,)`` or ``(N, ...)``.
    """
    tol = _check_number("tolerance", tolerance)
    if not (math.isfinite(tol) and tol >= 0.0):
        raise ValueError(f"tolerance is {tol}; expected a finite number >= 0")
    return _UnchangedResult(tol)


# ---------------------------------------------------------------------- summaries
def redundant_share(outputs: npt.ArrayLike, measure: Redundancy) -> float:
    """``r_N``: the share of inputs whose inference was redundant.

    Parameters
    ----------
    outputs : array_like
        The black box's outputs on ``N >= 1`` inputs.
    measure : Redundancy
        The task's ``f_h``.

    Returns
    -------
    float
        In ``[0, 1]``.
    """
    n = len(np.asarray(outputs))
    if n == 0:
        raise ValueError("outputs is empty; expected at least one input")
    redundant = np.asarray(measure(outputs))
    if redundant.shape != (n,) or redundant.dtype != np.bool_:
        raise ValueError(
            f"measure returned {redundant.dtype} of shape {redundant.shape}; "
            f"expected bool of shape ({n},)"
        )
    return float(redundant.mean())


def optimal_filter_rate(target_accuracy: float, r_n: float) -> float:
    """The largest filter rate any filter can reach at ``target_accuracy``.

    ``min(1, 1 - target + r_N)``, the thesis' optimum (§3.5.2: "computed as
    (1 - 0.9) + r_N"): a perfect filter removes every redundant input at no loss
    of accuracy (a skipped redundant input is served a result as good as the
    model's), and may then drop up to ``1 - target`` of all inputs among the
    useful ones, each a wrong result, before accuracy falls below the target.

    Parameters
    ----------
    target_accuracy : float
        In ``(0, 1]``.
    r_n : float
        The share of redundant inputs (:func:`redundant_share`), in ``[0, 1]``.

    Returns
    -------
    float
        In ``[0, 1]``.
    """
    target = _check_number("target_accuracy", target_accuracy)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target_accuracy is {target}; expected a value in (0, 1]")
    share = _check_number("r_n", r_n)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"r_n is {share}; expected a share in [0, 1]")
    return min(1.0, 1.0 - target + share)


# ---------------------------------------------------------------------- validation
def _check_number(name: str, value: object, *, allow_inf: bool = False) -> float:
    """``value`` as a float, or a ValueError unless it is a real number (not NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} is {value!r}; expected a number")
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not allow_inf):
        raise ValueError(f"{name} is {number}; expected a finite number")
    return number


def _as_integers(name: str, value: npt.ArrayLike, what: str) -> npt.NDArray[Any]:
    """``value`` as an ``(N,)`` integer array (bools refused)."""
    arr: npt.NDArray[Any] = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} has shape {arr.shape}; expected (N,) (one {what})")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} has dtype {arr.dtype}; expected integers ({what})")
    return arr


def _as_finite(
    name: str, value: npt.ArrayLike, *, ndim: int, what: str
) -> npt.NDArray[np.float64]:
    """``value`` as a float64 array of ``ndim`` dimensions, all finite."""
    arr: npt.NDArray[Any] = np.asarray(value)
    if arr.ndim != ndim:
        raise ValueError(f"{name} has shape {arr.shape}; expected {what}")
    if arr.size and arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} has dtype {arr.dtype}; expected real numbers")
    floats = arr.astype(np.float64)
    bad = ~np.isfinite(floats)
    if bad.any():
        where = ", ".join(str(int(i)) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}[{where}] is {floats[bad][0]}; expected a finite number"
        )
    return floats


def _as_results(name: str, value: npt.ArrayLike) -> npt.NDArray[Any]:
    """``value`` as an ``(N, ...)`` array of real results, floats finite."""
    arr: npt.NDArray[Any] = np.asarray(value)
    if arr.ndim == 0:
        raise ValueError(f"{name} has shape (); expected (N,) or (N, ...) results")
    if arr.size and arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} has dtype {arr.dtype}; expected real numbers")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        where = ", ".join(str(int(i)) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(
            f"{name}[{where}] is {arr[~np.isfinite(arr)][0]}; expected a finite result"
        )
    return arr
