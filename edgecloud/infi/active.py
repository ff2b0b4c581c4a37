"""Online updates of an InFi-Skip filter over a drifting stream, at one label budget.

InFi §3.4.3 ("在线主动更新", online active update) and the experiment of §3.5.2
(Fig. 3.15, vehicle counting over a day whose frames switch between IR and
RGB): a filter trained once on the first frames degrades when the input
distribution shifts, so while the filter runs, every period the inputs it is
least sure about are sent to the black box for their labels and the filter is
updated on them. Three policies, with the same number of black-box labels:

- ``"offline"``: labels only the beginning of the stream and trains once (the
  thesis: "the first 10 % of the day's frames");
- ``"periodic"``: every ``period`` samples, labels ``budget_per_period`` samples
  of that period drawn uniformly at random and fine-tunes on them (the thesis
  takes the first 10 % of every hour; a uniform draw avoids depending on what
  happens to open a period);
- ``"active"``: every ``period`` samples, labels the ``budget_per_period``
  samples of that period with the **lowest confidence** ``|p - 0.5|``, ``p`` the
  skip probability the filter gave them while it ran, and fine-tunes on them.
  This is the thesis' least-confidence strategy (Lewis & Catlett 1994, its
  ref. [147]): "select the β % samples with the lowest confidence
  (``|g(x) - 0.5|``)". Its ``g`` is the probability of *not* redundant,
  ``1 - p`` here, and ``|(1 - p) - 0.5| = |p - 0.5|``.

**Label budget.** All three start from one warm-up model trained on the first
``warmup`` samples and spend ``warmup + (P - 1) * budget_per_period`` labels
over ``P`` periods (no update follows the last period: nothing is left to
evaluate). Offline spends its share on the samples right after the warm-up, as
they stream by, and trains once, on all of them and the warm-up, when the last
one is labelled; it never updates again. The thesis' offline baseline also
gets the whole budget at the start ("在相同的训练样本数量预算下", under the
same budget of training samples).

**Prequential evaluation.** Period ``k`` is scored by the filter as it stands
after the update of period ``k - 1``; only then are period ``k``'s labels
drawn and the filter updated on them, so no filter is ever scored on a sample
it was trained on.

**Threshold.** An input is skipped when ``p >= threshold``. By default the
threshold is the one with the largest filter rate at ``threshold_target``
accuracy (:func:`~edgecloud.infi.thresholds.choose_skip_threshold`), chosen on
the warm-up samples and re-chosen after every update on the samples that update
trained on, scored by the updated filter: only labelled data, and the labels
closest to the stream's current distribution. ``fixed_threshold`` keeps one
threshold throughout instead (the thesis uses 0.5 for all three policies).

**Updates** fine-tune the current weights (the thesis' "实时参数更新",
real-time parameter update) with :func:`~edgecloud.infi.training.fit_skip`.
The thesis does not replay earlier labels; ``replay`` optionally adds that many
of the most recently labelled earlier samples to each update (they cost no new
labels). No flwr import.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from edgecloud.infi.datasets import FilterDataset
from edgecloud.infi.siamese import InputFilter
from edgecloud.infi.thresholds import choose_skip_threshold, skip_operating_point
from edgecloud.infi.training import fit_skip
from edgecloud.validation import check_positive_int, check_real

UpdatePolicy: TypeAlias = Literal["offline", "periodic", "active"]
"""How the filter learns while the stream runs (see the module docstring)."""

POLICIES: tuple[UpdatePolicy, ...] = ("offline", "periodic", "active")

FilterFactory: TypeAlias = Callable[[], InputFilter]
"""Builds the untrained single-task filter (seed it for reproducible runs)."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class StreamCurve:
    """One policy's prequential scores, one entry per period of the stream.

    Parameters
    ----------
    policy : str
        The :data:`UpdatePolicy` that produced the curve.
    start : numpy.ndarray
        ``(P,)`` int64 index in the dataset of each period's first sample.
    filter_rate : numpy.ndarray
        ``(P,)`` float64 share of the period's inputs skipped.
    accuracy : numpy.ndarray
        ``(P,)`` float64 inference accuracy on the period: an input run through
        the black box is correct, a skipped one exactly when truly redundant.
    threshold : numpy.ndarray
        ``(P,)`` float64 skip threshold the period was scored with.
    labels : numpy.ndarray
        ``(P,)`` int64 black-box labels spent by the end of the period, the
        warm-up's included.
    night : numpy.ndarray
        ``(P,)`` bool: more than half of the period's samples are night ones.
    """

    policy: str
    start: IntArray
    filter_rate: FloatArray
    accuracy: FloatArray
    threshold: FloatArray
    labels: IntArray
    night: BoolArray

    def __post_init__(self) -> None:
        n = len(self.start)
        for name in ("filter_rate", "accuracy", "threshold", "labels", "night"):
            column = getattr(self, name)
            if column.shape != (n,):
                raise ValueError(
                    f"{name} has shape {column.shape}; expected ({n},) like start"
                )

    @property
    def periods(self) -> int:
        """Number of periods ``P`` scored."""
        return len(self.start)

    @property
    def labels_total(self) -> int:
        """Black-box labels the policy spent over the whole stream."""
        return int(self.labels[-1]) if self.periods else 0

    @property
    def mean_accuracy(self) -> float:
        """Mean inference accuracy over all periods."""
        return _mean(self.accuracy, np.ones(self.periods, dtype=np.bool_))

    @property
    def mean_filter_rate(self) -> float:
        """Mean filter rate over all periods."""
        return _mean(self.filter_rate, np.ones(self.periods, dtype=np.bool_))

    @property
    def night_accuracy(self) -> float:
        """Mean inference accuracy over the night periods (NaN without any)."""
        return _mean(self.accuracy, self.night)

    @property
    def night_filter_rate(self) -> float:
        """Mean filter rate over the night periods (NaN without any)."""
        return _mean(self.filter_rate, self.night)

    def summary(self) -> dict[str, float]:
        """The curve's means as metrics with kebab-case keys.

        Returns
        -------
        dict[str, float]
            ``accuracy``, ``filter-rate``, ``night-accuracy``,
            ``night-filter-rate`` (NaN without night periods) and ``labels``.
        """
        return {
            "accuracy": self.mean_accuracy,
            "filter-rate": self.mean_filter_rate,
            "night-accuracy": self.night_accuracy,
            "night-filter-rate": self.night_filter_rate,
            "labels": float(self.labels_total),
        }


def least_confident(skip_probability: npt.ArrayLike, k: int) -> IntArray:
    """Indices of the ``k`` samples with the lowest confidence ``|p - 0.5|``.

    Parameters
    ----------
    skip_probability : array_like of float
        ``(N,)`` skip probabilities in ``[0, 1]``.
    k : int
        How many to pick, ``1 <= k <= N``.

    Returns
    -------
    numpy.ndarray
        ``(k,)`` int64 indices, least confident first; ties go to the earlier
        sample.
    """
    prob: npt.NDArray[np.float64] = np.asarray(skip_probability, dtype=np.float64)
    if prob.ndim != 1 or len(prob) == 0:
        raise ValueError(
            f"skip_probability has shape {prob.shape}; expected (N,), N >= 1"
        )
    bad = ~((prob >= 0.0) & (prob <= 1.0))  # NaN included
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"skip_probability[{index}] is {prob[index]}; expected a probability "
            "in [0, 1]"
        )
    check_positive_int("k", k)
    if k > len(prob):
        raise ValueError(f"k is {k}; expected at most the {len(prob)} samples")
    order = np.argsort(np.abs(prob - 0.5), kind="stable")
    return order[:k].astype(np.int64)


def run_stream(
    make_filter: FilterFactory,
    dataset: FilterDataset,
    policy: UpdatePolicy,
    warmup: int,
    period: int,
    budget_per_period: int,
    epochs: int = 20,
    lr: float = 1e-3,
    seed: int = 0,
    threshold_target: float = 0.9,
    fixed_threshold: float | None = None,
    replay: int = 0,
    batch_size: int = 32,
) -> StreamCurve:
    """Run one update policy over a stream, scoring each period before learning it.

    Parameters
    ----------
    make_filter : FilterFactory
        Builds the untrained single-task :class:`InputFilter` for
        ``dataset.inputs``.
    dataset : FilterDataset
        The stream, in stream order (e.g. one camera's samples sorted by
        ``frame_index`` over a day -> night shift).
    policy : UpdatePolicy
        ``"offline"``, ``"periodic"`` or ``"active"``.
    warmup : int
        Leading samples every policy labels and trains the warm-up model on.
    period : int
        Samples per period; the ``P = (len(dataset) - warmup) // period`` full
        periods after the warm-up are scored (a shorter tail is left out).
    budget_per_period : int
        Labels per update, ``<= period``.
    epochs : int
        Training epochs of the warm-up and of every update.
    lr : float
        RMSprop learning rate of every training (finite, > 0).
    seed : int
        Seeds the training and periodic's random draws.
    threshold_target : float
        Target accuracy in ``(0, 1]`` the skip threshold is chosen for.
    fixed_threshold : float | None
        When given (in ``[0, 1]``), every period is scored at this threshold
        and ``threshold_target`` is not used.
    replay : int
        The most recent earlier labelled samples added to each periodic or
        active update (``>= 0``; 0 as in the thesis).
    batch_size : int
        Samples per training step.

    Returns
    -------
    StreamCurve
    """
    settings = _Settings(
        warmup=warmup,
        period=period,
        budget=budget_per_period,
        epochs=epochs,
        lr=lr,
        seed=seed,
        threshold_target=threshold_target,
        fixed_threshold=fixed_threshold,
        replay=replay,
        batch_size=batch_size,
    )
    periods = _check_stream(dataset, policy, settings)
    model, threshold = _warm_up(make_filter, dataset, settings)
    return _stream(model, threshold, dataset, policy, settings, periods)


def compare_policies(
    make_filter: FilterFactory,
    dataset: FilterDataset,
    warmup: int,
    period: int,
    budget_per_period: int,
    epochs: int = 20,
    lr: float = 1e-3,
    seed: int = 0,
    threshold_target: float = 0.9,
    fixed_threshold: float | None = None,
    replay: int = 0,
    batch_size: int = 32,
) -> dict[str, StreamCurve]:
    """Run the three policies from one warm-up model and seed, at one label budget.

    The warm-up model is trained once and copied for each policy, so each curve
    equals :func:`run_stream`'s for that policy when ``make_filter`` is
    deterministic. Arguments as in :func:`run_stream`.

    Returns
    -------
    dict[str, StreamCurve]
        Policy name -> its curve, in the order of :data:`POLICIES`.
    """
    settings = _Settings(
        warmup=warmup,
        period=period,
        budget=budget_per_period,
        epochs=epochs,
        lr=lr,
        seed=seed,
        threshold_target=threshold_target,
        fixed_threshold=fixed_threshold,
        replay=replay,
        batch_size=batch_size,
    )
    periods = _check_stream(dataset, POLICIES[0], settings)
    model, threshold = _warm_up(make_filter, dataset, settings)
    curves: dict[str, StreamCurve] = {
        policy: _stream(
            copy.deepcopy(model), threshold, dataset, policy, settings, periods
        )
        for policy in POLICIES
    }
    totals = {name: curve.labels_total for name, curve in curves.items()}
    assert len(set(totals.values())) == 1, f"unequal label budgets {totals}"
    return curves


# ---------------------------------------------------------------------- the stream
@dataclass(frozen=True)
class _Settings:
    """The stream's knobs, as :func:`run_stream` documents them."""

    warmup: int
    period: int
    budget: int  # budget_per_period
    epochs: int
    lr: float
    seed: int
    threshold_target: float
    fixed_threshold: float | None
    replay: int
    batch_size: int


def _warm_up(
    make_filter: FilterFactory, dataset: FilterDataset, settings: _Settings
) -> tuple[InputFilter, float]:
    """The filter trained on the first ``warmup`` samples, and its threshold."""
    model = make_filter()
    if not isinstance(model, InputFilter) or model.num_tasks != 1:
        raise ValueError(
            f"make_filter returned {_describe(model)}; expected a single-task "
            "InputFilter"
        )
    rows = np.arange(settings.warmup, dtype=np.int64)
    return model, _train(model, dataset, rows, settings, settings.seed)


def _stream(
    model: InputFilter,
    threshold: float,
    dataset: FilterDataset,
    policy: UpdatePolicy,
    settings: _Settings,
    periods: int,
) -> StreamCurve:
    """Score, label and update period by period (``model`` changes in place)."""
    rng = np.random.default_rng(settings.seed)
    period, budget = settings.period, settings.budget
    budget_total = settings.warmup + (periods - 1) * budget
    labelled = np.arange(settings.warmup, dtype=np.int64)  # rows with labels
    starts = settings.warmup + period * np.arange(periods, dtype=np.int64)
    rates, accuracies, thresholds, spent = [], [], [], []
    for k, start in enumerate(starts):
        rows = np.arange(start, start + period, dtype=np.int64)
        # --- score the period with the filter as it stands (never trained on it)
        prob = model.predict_skip(dataset.inputs[rows])[:, 0]  # (period,)
        point = skip_operating_point(prob, dataset.redundant[rows], threshold)
        rates.append(point.filter_rate)
        accuracies.append(point.accuracy)
        thresholds.append(threshold)
        # --- label some of it (run the black box), then update; the last
        # period's labels could not be scored, so there is no last update
        if k < periods - 1:
            labelled, train = _label(
                policy, rows, prob, labelled, budget_total, settings, rng
            )
            if train is not None:
                seed = settings.seed + k + 1
                threshold = _train(model, dataset, train, settings, seed)
        spent.append(len(labelled))
    assert spent[-1] == budget_total, f"{policy} spent {spent[-1]} labels"
    return StreamCurve(
        policy=policy,
        start=starts,
        filter_rate=np.asarray(rates, dtype=np.float64),
        accuracy=np.asarray(accuracies, dtype=np.float64),
        threshold=np.asarray(thresholds, dtype=np.float64),
        labels=np.asarray(spent, dtype=np.int64),
        night=np.array(
            [dataset.night[s : s + period].mean() > 0.5 for s in starts],
            dtype=np.bool_,
        ),
    )


def _label(
    policy: UpdatePolicy,
    rows: IntArray,
    prob: npt.NDArray[np.float32],
    labelled: IntArray,
    budget_total: int,
    settings: _Settings,
    rng: np.random.Generator,
) -> tuple[IntArray, IntArray | None]:
    """The policy's labels after a period's ``rows``, and the rows to train on now.

    ``prob`` ``(period,)`` holds the skip probabilities the filter gave ``rows``
    while it ran; ``None`` rows to train on means no update this period.
    """
    if policy == "offline":
        # the first samples after the warm-up, until the budget is spent
        fresh = rows[: budget_total - len(labelled)]
        now = np.concatenate([labelled, fresh])
        done = len(fresh) > 0 and len(now) == budget_total
        return now, (now if done else None)  # the one training: the whole prefix
    if policy == "periodic":
        picked = np.sort(rng.choice(len(rows), size=settings.budget, replace=False))
    else:
        picked = least_confident(prob, settings.budget)
    fresh = rows[picked]
    train = np.concatenate([fresh, _replay(labelled, settings.replay)])
    return np.concatenate([labelled, fresh]), train


def _train(
    model: InputFilter,
    dataset: FilterDataset,
    rows: IntArray,
    settings: _Settings,
    seed: int,
) -> float:
    """Fit ``model`` on the labelled ``rows``; the threshold to use next.

    The threshold is the fixed one, or the best at the target accuracy on
    ``rows`` scored by the fitted model: only labelled samples choose it.
    """
    inputs, redundant = dataset.inputs[rows], dataset.redundant[rows]
    fit_skip(
        model,
        inputs,
        redundant,
        epochs=settings.epochs,
        lr=settings.lr,
        batch_size=settings.batch_size,
        seed=seed,
    )
    if settings.fixed_threshold is not None:
        return settings.fixed_threshold
    prob = model.predict_skip(inputs)[:, 0]
    return choose_skip_threshold(prob, redundant, settings.threshold_target).threshold


def _replay(earlier: IntArray, replay: int) -> IntArray:
    """The last ``replay`` of the ``earlier`` labelled rows (all if fewer)."""
    # the most recent labels, not a uniform draw: under drift the oldest ones
    # describe a distribution the stream has left
    return earlier[max(len(earlier) - replay, 0) :]


def _mean(values: FloatArray, mask: BoolArray) -> float:
    """Mean of ``values[mask]``; NaN when the mask selects nothing."""
    return float(values[mask].mean()) if mask.any() else math.nan


# ---------------------------------------------------------------------- validation
def _check_stream(dataset: FilterDataset, policy: str, settings: _Settings) -> int:
    """Validate the stream's arguments; the number of periods ``P >= 1``."""
    if not isinstance(dataset, FilterDataset):
        raise ValueError(f"dataset is {_describe(dataset)}; expected a FilterDataset")
    if policy not in POLICIES:
        raise ValueError(f"policy is {policy!r}; expected one of {list(POLICIES)}")
    for name, value in (
        ("warmup", settings.warmup),
        ("period", settings.period),
        ("budget_per_period", settings.budget),
        ("epochs", settings.epochs),
        ("batch_size", settings.batch_size),
    ):
        check_positive_int(name, value)
    if settings.budget > settings.period:
        raise ValueError(
            f"budget_per_period is {settings.budget}; expected at most "
            f"period = {settings.period} (labels come from that period's samples)"
        )
    replay = settings.replay
    if isinstance(replay, bool) or not isinstance(replay, int | np.integer):
        raise ValueError(f"replay is {replay!r}; expected an integer >= 0")
    if replay < 0:
        raise ValueError(f"replay is {replay}; expected an integer >= 0")
    if isinstance(settings.seed, bool) or not isinstance(
        settings.seed, int | np.integer
    ):
        raise ValueError(f"seed is {settings.seed!r}; expected an integer")
    lr = check_real("lr", settings.lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr is {lr}; expected a finite number > 0")
    _check_threshold(settings)
    return _check_length(dataset, settings)


def _check_threshold(settings: _Settings) -> None:
    """The fixed threshold in [0, 1], or else the target accuracy in (0, 1]."""
    if settings.fixed_threshold is None:
        target = check_real("threshold_target", settings.threshold_target)
        if not 0.0 < target <= 1.0:
            raise ValueError(
                f"threshold_target is {target}; expected a value in (0, 1]"
            )
        return
    cut = check_real("fixed_threshold", settings.fixed_threshold)
    if not 0.0 <= cut <= 1.0:
        raise ValueError(f"fixed_threshold is {cut}; expected a probability in [0, 1]")


def _check_length(dataset: FilterDataset, settings: _Settings) -> int:
    """The number of full periods; refuses a short stream or a one-class warm-up."""
    n, warmup, period = len(dataset), settings.warmup, settings.period
    if n < warmup + period:
        raise ValueError(
            f"dataset has {n} samples; expected at least warmup + period = "
            f"{warmup + period} (the warm-up and one period)"
        )
    redundant = dataset.redundant[:warmup]
    if redundant.all() or not redundant.any():
        kind = "redundant" if redundant.all() else "non-redundant"
        raise ValueError(
            f"dataset's first {warmup} (warm-up) samples are all {kind}; expected "
            "both redundant and non-redundant ones to train the filter on"
        )
    return (n - warmup) // period


def _describe(value: object) -> str:
    """``value``'s type for an error message (and its task count if a filter)."""
    if isinstance(value, InputFilter):
        return f"an InputFilter with {value.num_tasks} tasks"
    return f"a {type(value).__name__}"
