"""Online updates of InFi-Skip: budgets, prequential order, least confidence, drift."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import edgecloud.infi.active as active
from edgecloud.infi.active import (
    POLICIES,
    StreamCurve,
    compare_policies,
    least_confident,
    run_stream,
)
from edgecloud.infi.datasets import FilterDataset
from edgecloud.infi.features import InputLike, feature_network
from edgecloud.infi.siamese import InputFilter
from edgecloud.infi.thresholds import skip_operating_point

# the drifting stream: a warm-up, then 4 day and 4 night periods
WARMUP, PERIOD, BUDGET, PERIODS = 80, 40, 10, 8
SHIFT = WARMUP + (PERIODS // 2) * PERIOD
# a faint fixed pattern the IR frames carry, so day and night can be told apart
CHECKER = (np.indices((8, 8)).sum(axis=0) % 2 * 2 - 1).astype(np.float32)  # ±1


def _drifting_stream(seed: int) -> FilterDataset:
    """8x8 frames whose brightness shows the traffic; night frames are dimmer.

    A frame is redundant when its scene's traffic ``level`` (uniform in [0, 1])
    is below 0.5, and its pixels are ``level * U(0.5, 1)``. From ``SHIFT`` on it
    is night: IR frames are 0.4 times as bright and carry ``0.1 * CHECKER``, so
    a busy night frame looks like an empty day frame and a day-trained filter
    skips it. The frames go through the vector network: the image network's
    per-sample GroupNorm would normalise the brightness away.
    """
    rng = np.random.default_rng(seed)
    n = WARMUP + PERIODS * PERIOD
    level = rng.random(n)
    night = np.arange(n) >= SHIFT
    gain = np.where(night, 0.4, 1.0)
    frames = (level * gain)[:, None, None, None] * rng.uniform(0.5, 1.0, (n, 1, 8, 8))
    frames[night] += 0.1 * CHECKER
    redundant = level < 0.5
    return FilterDataset(
        modality="vector",
        inputs=frames.astype(np.float32),
        outputs=(~redundant).astype(np.int64),  # a vehicle count of 0 or 1
        redundant=redundant,
        camera=np.zeros(n, dtype=np.int64),
        frame_index=np.arange(n, dtype=np.int64),
        night=night,
    )


def _tiny_filter() -> InputFilter:
    features = feature_network("vector", (1, 8, 8), embedding_dim=8, hidden=16, seed=0)
    return InputFilter(features, seed=0)


@pytest.fixture(scope="module")
def curves() -> dict[str, StreamCurve]:
    """The three policies on the drifting stream (trained once for the module)."""
    return compare_policies(
        _tiny_filter,
        _drifting_stream(seed=0),
        warmup=WARMUP,
        period=PERIOD,
        budget_per_period=BUDGET,
        epochs=20,
        lr=1e-2,
        seed=0,
    )


# ---------------------------------------------------------------------- real runs
def test_every_policy_spends_the_same_labels(curves: dict[str, StreamCurve]) -> None:
    # Assert: the warm-up plus one budget per update, no update after the last period
    total = WARMUP + (PERIODS - 1) * BUDGET
    assert list(curves) == list(POLICIES)
    assert {curve.labels_total for curve in curves.values()} == {total}
    steady = WARMUP + BUDGET * np.minimum(np.arange(1, PERIODS + 1), PERIODS - 1)
    np.testing.assert_array_equal(curves["periodic"].labels, steady)
    np.testing.assert_array_equal(curves["active"].labels, steady)
    # offline labels the samples right after the warm-up: 40 then the last 30
    np.testing.assert_array_equal(curves["offline"].labels[:2], [WARMUP + 40, total])


def test_curves_mark_the_night_periods(curves: dict[str, StreamCurve]) -> None:
    # Assert
    for curve in curves.values():
        assert curve.periods == PERIODS
        np.testing.assert_array_equal(curve.start, WARMUP + PERIOD * np.arange(8))
        np.testing.assert_array_equal(curve.night, [False] * 4 + [True] * 4)


def test_active_update_beats_offline_after_the_night_shift(
    curves: dict[str, StreamCurve],
) -> None:
    # Assert: offline skips every dim night frame, so half of them wrongly
    offline, updated = curves["offline"], curves["active"]
    assert offline.night_filter_rate == 1.0
    assert offline.night_accuracy < 0.6
    assert updated.night_accuracy >= offline.night_accuracy + 0.1


def test_run_stream_matches_compare_policies(curves: dict[str, StreamCurve]) -> None:
    # Execute: the same warm-up (deterministic factory) and seed, one policy
    curve = run_stream(
        _tiny_filter,
        _drifting_stream(seed=0),
        "active",
        warmup=WARMUP,
        period=PERIOD,
        budget_per_period=BUDGET,
        epochs=20,
        lr=1e-2,
        seed=0,
    )

    # Assert
    np.testing.assert_array_equal(curve.accuracy, curves["active"].accuracy)
    np.testing.assert_array_equal(curve.threshold, curves["active"].threshold)


# ---------------------------------------------------------------------- stubbed runs
# Sample i of a stub stream is the one-number input [i]: the stub filter and the
# stub training see which samples they get.
STUB_N, STUB_WARMUP, STUB_PERIOD, STUB_BUDGET = 50, 10, 10, 3
STUB_PROB = np.random.default_rng(7).random(STUB_N).astype(np.float32)


class _StubFilter(InputFilter):
    """Skip probability ``STUB_PROB[i]`` for sample ``i``; logs what it scores."""

    def __init__(self, log: list[tuple[str, list[int]]]) -> None:
        super().__init__(feature_network("vector", (1,), 2, hidden=2, seed=0), seed=0)
        self.log = log

    def predict_skip(
        self, x: InputLike, batch_size: int = 256
    ) -> npt.NDArray[np.float32]:
        ids = np.asarray(x)[:, 0].astype(np.int64)
        self.log.append(("score", ids.tolist()))
        return STUB_PROB[ids][:, None]


def _stub_stream() -> FilterDataset:
    ids = np.arange(STUB_N)
    return FilterDataset(
        modality="vector",
        inputs=ids[:, None].astype(np.float32),
        outputs=ids % 2,
        redundant=ids % 2 == 0,
        camera=np.zeros(STUB_N, dtype=np.int64),
        frame_index=ids.astype(np.int64),
        night=ids >= 30,
    )


def _stub_run(
    monkeypatch: pytest.MonkeyPatch, policy: str, replay: int = 0
) -> tuple[StreamCurve, list[tuple[str, list[int]]]]:
    """``policy`` on the stub stream at a fixed threshold, with a logging fit."""
    log: list[tuple[str, list[int]]] = []

    def fake_fit(model: InputFilter, inputs: Any, labels: Any, **_: Any) -> list[float]:
        log.append(("fit", np.asarray(inputs)[:, 0].astype(np.int64).tolist()))
        return []

    monkeypatch.setattr(active, "fit_skip", fake_fit)
    make: Callable[[], InputFilter] = lambda: _StubFilter(log)  # noqa: E731
    curve = run_stream(
        make,
        _stub_stream(),
        policy,  # type: ignore[arg-type]
        warmup=STUB_WARMUP,
        period=STUB_PERIOD,
        budget_per_period=STUB_BUDGET,
        fixed_threshold=0.5,
        replay=replay,
    )
    return curve, log


@pytest.mark.parametrize("policy", POLICIES)
def test_each_period_is_scored_before_it_is_trained_on(
    monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    # Execute
    curve, log = _stub_run(monkeypatch, policy, replay=4)

    # Assert: the scores are the periods in order, none trained on beforehand
    blocks = [list(range(s, s + STUB_PERIOD)) for s in range(10, STUB_N, 10)]
    assert [ids for kind, ids in log if kind == "score"] == blocks
    trained: set[int] = set()
    for kind, ids in log:
        if kind == "fit":
            trained.update(ids)
        else:
            assert not trained & set(ids)
    assert log[-1][0] == "score"  # no update after the last period
    for k, block in enumerate(blocks):
        point = skip_operating_point(STUB_PROB[block], np.array(block) % 2 == 0, 0.5)
        assert curve.accuracy[k] == point.accuracy
        assert curve.filter_rate[k] == point.filter_rate


def test_active_fine_tunes_on_the_least_confident_of_each_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Execute
    _, log = _stub_run(monkeypatch, "active")

    # Assert: after the warm-up fit, one fit per period but the last
    fits = [ids for kind, ids in log if kind == "fit"]
    assert fits[0] == list(range(STUB_WARMUP))
    assert len(fits) == 1 + 3
    for k, ids in enumerate(fits[1:]):
        block = np.arange(10 + 10 * k, 20 + 10 * k)
        margin = np.abs(STUB_PROB[block] - 0.5)
        expected = block[np.argsort(margin)[:STUB_BUDGET]]
        assert sorted(ids) == sorted(expected.tolist())
        assert (
            np.abs(STUB_PROB[ids] - 0.5).max()
            <= np.delete(margin, np.argsort(margin)[:STUB_BUDGET]).min()
        )


def test_replay_adds_the_most_recent_earlier_labels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Execute
    _, log = _stub_run(monkeypatch, "active", replay=4)

    # Assert: each update = its picks + the 4 labels before them
    fits = [ids for kind, ids in log if kind == "fit"]
    labelled = list(fits[0])
    for ids in fits[1:]:
        picks, replayed = ids[:STUB_BUDGET], ids[STUB_BUDGET:]
        assert replayed == labelled[-4:]
        labelled += picks


def test_periodic_draws_its_labels_from_the_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Execute
    _, log = _stub_run(monkeypatch, "periodic")

    # Assert
    fits = [ids for kind, ids in log if kind == "fit"][1:]
    assert len(fits) == 3
    for k, ids in enumerate(fits):
        assert len(set(ids)) == STUB_BUDGET
        assert set(ids) <= set(range(10 + 10 * k, 20 + 10 * k))


def test_offline_trains_once_on_the_stream_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Execute
    curve, log = _stub_run(monkeypatch, "offline")

    # Assert: warm-up, then one fit on the first 10 + 3 * 3 samples, when labelled
    fits = [ids for kind, ids in log if kind == "fit"]
    assert fits == [list(range(10)), list(range(19))]
    np.testing.assert_array_equal(curve.labels, [19, 19, 19, 19])


# ---------------------------------------------------------------------- pure parts
def test_least_confident_by_hand() -> None:
    # Prepare: distances to 0.5 are 0.4, 0.05, 0.4, 0.1, 0.0
    prob = np.array([0.9, 0.45, 0.1, 0.6, 0.5])

    # Execute
    picked = least_confident(prob, 4)

    # Assert: the 0.4 tie goes to the earlier sample
    np.testing.assert_array_equal(picked, [4, 1, 3, 0])


def test_stream_curve_means_and_no_night() -> None:
    # Prepare
    curve = StreamCurve(
        policy="active",
        start=np.array([0, 10]),
        filter_rate=np.array([0.2, 0.4]),
        accuracy=np.array([1.0, 0.8]),
        threshold=np.array([0.5, 0.5]),
        labels=np.array([5, 8]),
        night=np.array([False, False]),
    )

    # Execute
    summary = curve.summary()

    # Assert
    assert summary["accuracy"] == pytest.approx(0.9)
    assert summary["filter-rate"] == pytest.approx(0.3)
    assert summary["labels"] == 8.0
    assert np.isnan(summary["night-accuracy"])
    assert np.isnan(summary["night-filter-rate"])


# ---------------------------------------------------------------------- bad inputs
def _one_class_warmup(redundant: bool) -> FilterDataset:
    data = _stub_stream()
    flags = data.redundant.copy()
    flags[:STUB_WARMUP] = redundant
    return FilterDataset(
        modality=data.modality,
        inputs=data.inputs,
        outputs=data.outputs,
        redundant=flags,
        camera=data.camera,
        frame_index=data.frame_index,
        night=data.night,
    )


def _two_task_filter() -> InputFilter:
    return InputFilter(feature_network("vector", (1,), 2, hidden=2, seed=0), 2)


GOOD: dict[str, Any] = {
    "make_filter": _tiny_filter,
    "dataset": _stub_stream(),
    "policy": "active",
    "warmup": STUB_WARMUP,
    "period": STUB_PERIOD,
    "budget_per_period": STUB_BUDGET,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # an unknown policy
        ({"policy": "online"}, r"policy is 'online'; expected one of"),
        # no warm-up: nothing to start from
        ({"warmup": 0}, r"warmup is 0; expected a positive integer"),
        # an empty period
        ({"period": 0}, r"period is 0; expected a positive integer"),
        # an update without labels
        ({"budget_per_period": 0}, r"budget_per_period is 0; expected a positive"),
        # more labels than the period has samples
        ({"budget_per_period": 11}, r"budget_per_period is 11; expected at most"),
        # a float where a count belongs
        ({"warmup": 10.0}, r"warmup is 10.0; expected a positive integer"),
        # the warm-up and one period do not fit in 50 samples
        ({"warmup": 45}, r"dataset has 50 samples; expected at least warmup \+"),
        # a warm-up with only redundant samples cannot teach the filter
        (
            {"dataset": _one_class_warmup(True)},
            r"first 10 \(warm-up\) samples are all redundant",
        ),
        # nor one with only non-redundant samples
        (
            {"dataset": _one_class_warmup(False)},
            r"first 10 \(warm-up\) samples are all non-redundant",
        ),
        # not a FilterDataset
        ({"dataset": np.zeros((50, 1))}, r"dataset is a ndarray; expected a Filter"),
        # no training at all
        ({"epochs": 0}, r"epochs is 0; expected a positive integer"),
        # a learning rate that does not learn
        ({"lr": 0.0}, r"lr is 0.0; expected a finite number > 0"),
        # nor one that is not a number
        ({"lr": float("nan")}, r"lr is nan; expected a number"),
        # a target accuracy of 0 is meaningless
        ({"threshold_target": 0.0}, r"threshold_target is 0.0; expected a value in"),
        # a fixed threshold outside the probabilities
        ({"fixed_threshold": 1.5}, r"fixed_threshold is 1.5; expected a probability"),
        # a negative replay
        ({"replay": -1}, r"replay is -1; expected an integer >= 0"),
        # a filter for two tasks; the stream has one skip label
        (
            {"make_filter": _two_task_filter},
            r"make_filter returned an InputFilter with 2 tasks; expected a single",
        ),
    ],
)
def test_run_stream_refuses_bad_arguments(change: dict[str, Any], message: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=message):
        run_stream(**{**GOOD, **change})


@pytest.mark.parametrize(
    ("prob", "k", "message"),
    [
        # nothing to pick
        ([0.2, 0.7], 0, r"k is 0; expected a positive integer"),
        # more picks than samples
        ([0.2, 0.7], 3, r"k is 3; expected at most the 2 samples"),
        # a score that is not a probability
        ([0.2, 1.7], 1, r"skip_probability\[1\] is 1.7; expected a probability"),
        # a batch per task instead of one score per sample
        ([[0.2, 0.7]], 1, r"skip_probability has shape \(1, 2\); expected \(N,\)"),
    ],
)
def test_least_confident_refuses_bad_arguments(
    prob: list[Any], k: int, message: str
) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=message):
        least_confident(prob, k)


def test_stream_curve_refuses_ragged_columns() -> None:
    # Execute / Assert: one accuracy for two periods
    with pytest.raises(ValueError, match=r"accuracy has shape \(1,\); expected \(2,\)"):
        StreamCurve(
            policy="active",
            start=np.array([0, 10]),
            filter_rate=np.array([0.2, 0.4]),
            accuracy=np.array([1.0]),
            threshold=np.array([0.5, 0.5]),
            labels=np.array([5, 8]),
            night=np.array([False, False]),
        )
