"""PacketGate: one vectorised decision per round in each mode, and its cost probe."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgecloud.packetgame import (
    NEUTRAL_ESTIMATE,
    ContextualPredictor,
    PacketGate,
    decision_cost,
    greedy_select,
)


def _round(
    rng: np.random.Generator, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    intra = rng.random(m) < 0.2
    sizes = np.where(intra, 50_000.0, 2_000.0) * rng.uniform(0.5, 2.0, m)
    costs = np.where(intra, 3.0, 1.0)
    return sizes, intra, costs


@pytest.mark.parametrize("value", ["staleness", "thesis"])
def test_temporal_gate_explores_streams_it_did_not_select(value: str) -> None:
    # Prepare
    gate = PacketGate(6, 4, horizon=100, mode="temporal", value=value)  # type: ignore[arg-type]
    costs = np.ones(6)
    sizes, intra = np.full(6, 1000.0), np.zeros(6, bool)

    # Execute
    first = gate.decide(sizes, intra, costs, None, budget=3.0)
    # nothing changed on the streams it decoded
    gate.feedback(first.chosen, np.where(first.chosen, 0.0, np.nan))
    second = gate.decide(sizes, intra, costs, None, budget=3.0)

    # Assert: ties among unseen streams go to the lowest indices, then the rest
    assert first.chosen.tolist() == [True, True, True, False, False, False]
    assert second.chosen.tolist() == [False, False, False, True, True, True]
    assert first.spent == second.spent == 3.0


@pytest.mark.parametrize("mode", ["packetgame", "contextual"])
def test_thesis_predictor_modes_rank_by_the_predictor(mode: str) -> None:
    # Prepare
    rng = np.random.default_rng(0)
    predictor = ContextualPredictor(window=3, seed=1)
    gate = PacketGate(
        10,
        3,
        horizon=20,
        predictor=predictor,
        mode=mode,  # type: ignore[arg-type]
        value="thesis",
    )
    for _ in range(3):
        sizes, intra, costs = _round(rng, 10)
        selection = gate.decide(sizes, intra, costs, None, budget=4.0)
        gate.feedback(selection.chosen, rng.random(10))
    sizes, intra, costs = _round(rng, 10)
    estimates = gate.estimator.estimate()  # before decide() pushes the packets

    # Execute
    selection = gate.decide(sizes, intra, costs, None, budget=4.0)

    # Assert: the same choice as greedy on the predictor's output
    temporal = estimates if mode == "packetgame" else np.full(10, NEUTRAL_ESTIMATE)
    values = predictor.predict(gate.windows.views(), temporal)[:, 0]
    expected = greedy_select(values, costs, 4.0)
    np.testing.assert_array_equal(selection.chosen, expected.chosen)
    assert selection.spent <= 4.0


@pytest.mark.parametrize("mode", ["packetgame", "contextual"])
def test_staleness_accumulates_while_a_stream_is_skipped(mode: str) -> None:
    # Prepare: 3 streams with the same packets; only stream 0 fits each round
    predictor = ContextualPredictor(window=3, seed=1)
    gate = PacketGate(3, 3, predictor=predictor, mode=mode)  # type: ignore[arg-type]
    sizes, intra = np.full(3, 2000.0), np.zeros(3, bool)
    costs = np.array([1.0, 10.0, 10.0])
    survival = np.ones(3)
    for _ in range(4):
        estimates = gate.estimator.means(prior=NEUTRAL_ESTIMATE)
        if mode == "contextual":
            estimates = np.full(3, NEUTRAL_ESTIMATE)

        # Execute
        selection = gate.decide(sizes, intra, costs, None, budget=1.0)

        # Assert: value = P(the served result is stale) = 1 - prod(1 - c)
        c = predictor.predict(gate.windows.views(), estimates)[:, 0]
        survival = survival * (1.0 - c)
        assert selection.chosen.tolist() == [True, False, False]
        np.testing.assert_allclose(gate._survival[1:, 0], survival[1:], rtol=1e-6)
        survival[0] = 1.0  # chosen: fresh again
        assert gate._survival[0, 0] == 1.0
        gate.feedback(selection.chosen, np.array([0.0, np.nan, np.nan]))


def test_staleness_estimator_keeps_observations_not_rounds() -> None:
    # Prepare: stream 1 observed once (feedback 1), then skipped for 10 rounds
    gate = PacketGate(2, 2, mode="temporal")
    sizes, intra = np.ones(2), np.zeros(2, bool)
    gate.decide(sizes, intra, np.ones(2), None, 2.0)
    gate.feedback(np.array([True, True]), np.array([0.0, 1.0]))
    for _ in range(10):
        gate.decide(sizes, intra, np.array([1.0, 5.0]), None, 1.0)
        gate.feedback(np.array([True, False]), np.array([0.0, np.nan]))

    # Assert: stream 1's mean is still its one observation, smoothed by the
    # prior (the thesis' window of rounds would have forgotten it); stream 0's
    # two zeros keep a positive estimate
    np.testing.assert_allclose(gate.estimator.means(prior=0.5), [0.5 / 3, 1.5 / 2])


def test_multi_task_gate_takes_feedback_per_task() -> None:
    # Prepare
    rng = np.random.default_rng(1)
    gate = PacketGate(8, 5, predictor=ContextualPredictor(5, num_tasks=2, seed=0))
    deps = [np.array([1.0])] * 8

    for _ in range(6):
        sizes, intra, costs = _round(rng, 8)

        # Execute
        selection = gate.decide(sizes, intra, costs + 1.0, deps, budget=5.0)
        gate.feedback(selection.chosen, rng.random((8, 2)))

        # Assert
        assert selection.spent <= 5.0
    assert gate.num_tasks == 2
    assert gate.estimator.estimate().shape == (8, 2)


def test_decide_and_feedback_must_alternate() -> None:
    # Prepare
    gate = PacketGate(2, 2, mode="temporal")
    sizes, intra, costs = np.ones(2), np.zeros(2, bool), np.ones(2)

    # Execute / Assert
    with pytest.raises(RuntimeError, match="without a decide"):
        gate.feedback(np.zeros(2, bool), np.zeros(2))
    gate.decide(sizes, intra, costs, None, 1.0)
    with pytest.raises(RuntimeError, match="before feedback"):
        gate.decide(sizes, intra, costs, None, 1.0)


def test_rejected_decision_records_nothing() -> None:
    # Prepare
    gate = PacketGate(2, 2, mode="temporal")
    sizes, intra = np.ones(2), np.zeros(2, bool)

    # Execute: a zero cost is refused before the packets enter the windows
    with pytest.raises(ValueError, match=r"costs\[1\] is 0.0"):
        gate.decide(sizes, intra, np.array([1.0, 0.0]), None, 1.0)
    selection = gate.decide(sizes, intra, np.ones(2), None, 1.0)

    # Assert
    assert selection.chosen.tolist() == [True, False]
    views = gate.windows.views()  # (2, 2, 2): exactly one packet per stream
    np.testing.assert_array_equal(views[:, :, 0], 0.0)
    assert (views[:, 1, 1] > 0).all()


def test_temporal_mode_warns_about_an_unused_predictor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Execute
    with caplog.at_level(logging.WARNING):
        PacketGate(3, 3, predictor=ContextualPredictor(3), mode="temporal")

    # Assert
    assert "ignores the predictor" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # unknown mode
        ({"mode": "random"}, r"mode is 'random'; expected one of"),
        # the default mode needs a predictor
        ({"predictor": None}, r"predictor is None; mode 'packetgame' expected"),
        # the predictor reads windows of another length
        ({"predictor": ContextualPredictor(4)}, r"predictor.window is 4; expected 5"),
        # task counts of gate and predictor disagree
        ({"num_tasks": 3}, r"num_tasks is 3; expected 1"),
        # no streams
        ({"num_streams": 0}, r"num_streams is 0"),
    ],
)
def test_gate_rejects_bad_configuration(kwargs: dict[str, object], match: str) -> None:
    # Prepare
    arguments: dict[str, object] = {
        "num_streams": 4,
        "window": 5,
        "predictor": ContextualPredictor(5),
    }
    arguments.update(kwargs)

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        PacketGate(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sizes", "intra", "costs", "deps", "budget", "match"),
    [
        # a negative packet size
        ([-1.0, 1.0], [True, False], [1.0, 1.0], None, 1.0, r"sizes\[0\] is -1.0"),
        # flags given as integers
        ([1.0, 1.0], [1, 0], [1.0, 1.0], None, 1.0, r"is_intra has dtype int64"),
        # a cost per stream is required
        ([1.0, 1.0], [True, False], [1.0], None, 1.0, r"costs has shape \(1,\)"),
        # negative budget
        ([1.0, 1.0], [True, False], [1.0, 1.0], None, -2.0, r"budget is -2.0"),
        # one dependency list per stream
        ([1.0, 1.0], [True, False], [1.0, 1.0], [[]], 1.0, r"dependency_costs has 1"),
    ],
)
def test_decide_rejects_bad_inputs(
    sizes: list[float],
    intra: list[object],
    costs: list[float],
    deps: list[list[float]] | None,
    budget: float,
    match: str,
) -> None:
    # Prepare
    gate = PacketGate(2, 3, mode="temporal")

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        gate.decide(np.array(sizes), np.array(intra), np.array(costs), deps, budget)
    np.testing.assert_array_equal(gate.windows.views(), 0.0)  # nothing recorded


@pytest.mark.parametrize("mode", ["packetgame", "temporal", "contextual"])
def test_decision_cost_reports_per_stream_seconds(mode: str) -> None:
    # Execute
    result = decision_cost(num_streams=50, window=5, rounds=5, mode=mode, warmup=1)  # type: ignore[arg-type]

    # Assert: shares only; timings are not asserted
    for key in ("total-s", "predictor-s", "optimizer-s", "estimator-s"):
        assert result[key] > 0.0
    assert result["num-streams"] == 50.0 and result["torch-threads"] == 1.0
