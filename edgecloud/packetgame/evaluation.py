"""Accuracy against decode budget, per policy: the figures of PacketGame's benchmark.

:func:`budget_curve` runs policies online
(:func:`~edgecloud.packetgame.online.run_online`) at budgets given as fractions of
decoding everything, trains the learnt policies on the past of the cameras (frames
before ``score_from``) and scores only their future (frames from ``score_from`` on,
both accuracy and decode spent), so no policy is scored on what it was trained on.
:func:`saving_at_accuracy` reads a curve at a target accuracy (the thesis' "decode saved
at 90 % accuracy") and :func:`concurrency_gain` turns that into how many more streams a
fixed decode capacity serves.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import torch

from edgecloud.data.testbed.readers import CameraVideo
from edgecloud.packetgame.dependencies import DecodeCosts
from edgecloud.packetgame.online import (
    BoolArray,
    FloatArray,
    FrameModel,
    Images,
    IntArray,
    OnlineResult,
    Redundancy,
    run_online,
)
from edgecloud.packetgame.policies import make_policy, train_predictor, training_data
from edgecloud.packetgame.predictor import ContextualPredictor, fit
from edgecloud.packetgame.validation_utils import check_positive_int

# Policies whose predictor is trained (which one they need).
_PREDICTOR_OF = {
    "packetgame": "fused",
    "packetgame-thesis": "fused",
    "contextual": "neutral",
}


@dataclass(frozen=True)
class CurvePoint:
    """One policy at one budget, scored on the frames from ``score_from`` on."""

    task: str
    policy: str
    fraction: float  # budget / decode-everything's mean cost per round
    budget: float  # per round, in the cost model's unit
    accuracy: float
    saved: float  # 1 - spent / decode-everything's spent, same rounds
    rounds: int
    decode_seconds: float
    decisions_per_second: float
    wall_seconds: float

    def as_dict(self) -> dict[str, float | int | str]:
        """Plain values for JSON and CSV."""
        return asdict(self)


@dataclass(frozen=True)
class Predictors:
    """The learnt policies' predictors: fused (PacketGame) and contextual-only."""

    fused: ContextualPredictor
    neutral: ContextualPredictor


def train_predictors(
    cameras: Sequence[CameraVideo],
    references: Sequence[IntArray],
    redundancy: Redundancy,
    window: int,
    score_from: int,
    epochs: int = 10,
    seed: int = 0,
) -> Predictors:
    """Both predictors, trained on the packets of frames before ``score_from``."""

    def train(neutral: bool) -> ContextualPredictor:
        return train_predictor(
            cameras,
            None,
            redundancy,
            window,
            epochs,
            seed,
            neutral=neutral,
            references=references,
            frame_limit=score_from,
        )

    return Predictors(fused=train(False), neutral=train(True))


def scored(
    result: OnlineResult,
    decode_all_spent: FloatArray,
    references: Sequence[IntArray],
    score_from: int,
) -> tuple[float, float]:
    """``(accuracy, saved)`` of ``result`` on the frames and rounds >= ``score_from``.

    Accuracy: the share of those frames served the reference result; saved:
    ``1 - spent / decode-all's spent`` over the same rounds
    (``decode_all_spent``: decode-all's ``spent_per_round``).
    """
    hits = frames = 0
    for served, ref in zip(result.served, references, strict=True):
        end = min(len(served), len(ref), result.rounds)
        hits += int(np.sum(served[score_from:end] == ref[score_from:end]))
        frames += max(0, end - score_from)
    spent = float(result.spent_per_round[score_from:].sum())
    full = float(decode_all_spent[score_from:].sum())
    accuracy = hits / frames if frames else 1.0
    return accuracy, (1.0 - spent / full if full > 0 else 0.0)


def budget_curve(
    task: str,
    cameras: Sequence[CameraVideo],
    references: Sequence[IntArray],
    redundancy: Redundancy,
    costs: DecodeCosts,
    policies: Sequence[str],
    fractions: Sequence[float],
    *,
    predictors: Predictors | None = None,
    score_from: int,
    rounds: int | None = None,
    window: int = 5,
    model: FrameModel | None = None,
    progress: Callable[[str], None] | None = None,
    bucket: bool = True,
    workers: int = 1,
) -> list[CurvePoint]:
    """Each policy at each budget fraction, online over ``cameras``.

    Parameters
    ----------
    task : str
        Label of the rows (e.g. the black box's name).
    cameras : Sequence[CameraVideo]
        The live streams.
    references : Sequence[numpy.ndarray]
        Per camera, its :func:`~edgecloud.packetgame.online.reference_outputs`.
    redundancy : Redundancy
        The task's feedback rule.
    costs : DecodeCosts
        Calibrated decode costs.
    policies : Sequence[str]
        Names from :data:`~edgecloud.packetgame.policies.POLICIES`. "decode-all"
        is always run (it is the saving's denominator) and reported at fraction
        1; "reducto" needs ``model`` and is run once (it ignores the budget).
    fractions : Sequence[float]
        Budgets as fractions (> 0) of decode-everything's mean cost per round.
    predictors : Predictors | None
        Needed when a learnt policy is asked for.
    score_from : int
        First scored frame and round (train on frames before it).
    rounds : int | None
        Rounds to run (``None``: until the streams end).
    window : int
        Gate window ``w``.
    model : FrameModel | None
        The black box, for "reducto" (pixels are needed); other policies read
        each decoded frame's result from ``references``.
    progress : Callable[[str], None] | None
        Called with a line after each run.
    bucket : bool
        Give each run a token bucket of its budget plus one I picture (see
        :func:`~edgecloud.packetgame.online.run_online`'s ``burst``), so a
        budget below one I picture per round still decodes; False: the
        thesis' strict per-round budget.
    workers : int
        Runs in parallel (separate processes) after decode-all's.

    Returns
    -------
    list[CurvePoint]
        One per (policy, fraction), decode-all and Reducto once.

    Raises
    ------
    ValueError
        On an unknown policy, a fraction <= 0, a learnt policy without
        ``predictors``, or Reducto without ``model``.
    """
    _check_curve_args(policies, fractions, predictors, score_from, model)
    common = _Common(
        task, tuple(cameras), tuple(references), redundancy, costs, predictors,
        score_from, rounds, window, model, bucket, per_round=1.0, decode_all=None,
    )  # fmt: skip
    decode_all_point, decode_all = _run_point(common, "decode-all", 1.0)
    per_round = decode_all.decode_all_cost / max(decode_all.rounds, 1)
    common = dataclasses.replace(
        common, per_round=per_round, decode_all=decode_all.spent_per_round
    )
    jobs = [
        (name, 1.0 if name == "reducto" else fraction)
        for name in policies
        if name != "decode-all"
        for fraction in ((1.0,) if name == "reducto" else fractions)
    ]
    points = [decode_all_point]
    report = progress or (lambda line: None)
    report(_line(decode_all_point))
    if workers <= 1:
        for name, fraction in jobs:
            points.append(_run_point(common, name, fraction)[0])
            report(_line(points[-1]))
        return points
    context = multiprocessing.get_context("spawn")  # no forked torch/PyAV state
    # the black box (Reducto's) need not pickle: it runs here, meanwhile
    shipped = dataclasses.replace(common, model=None)
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {
            job: pool.submit(_point_only, shipped, *job)
            for job in jobs
            if job[0] != "reducto"
        }
        here = {job: _run_point(common, *job)[0] for job in jobs if job not in futures}
        for job in jobs:  # in job order, so the rows are deterministic
            points.append(here[job] if job in here else futures[job].result())
            report(_line(points[-1]))
    return points


@dataclass(frozen=True)
class _Common:
    """What every run of one curve shares (picklable for worker processes)."""

    task: str
    cameras: tuple[CameraVideo, ...]
    references: tuple[IntArray, ...]
    redundancy: Redundancy
    costs: DecodeCosts
    predictors: Predictors | None
    score_from: int
    rounds: int | None
    window: int
    model: FrameModel | None
    bucket: bool
    per_round: float  # decode-everything's mean cost per round
    decode_all: FloatArray | None  # its spent per round, the saving's denominator


def _line(point: CurvePoint) -> str:
    return (
        f"{point.task} {point.policy} at {point.fraction:.2f}: accuracy "
        f"{point.accuracy:.3f}, saved {point.saved:.3f} ({point.wall_seconds:.0f} s)"
    )


def _point_only(common: _Common, name: str, fraction: float) -> CurvePoint:
    torch.set_num_threads(1)  # one core per worker
    return _run_point(common, name, fraction)[0]


def _run_point(
    common: _Common, name: str, fraction: float
) -> tuple[CurvePoint, OnlineResult]:
    """One policy at one budget fraction, run and scored."""
    budget = 0.0 if name == "decode-all" else fraction * common.per_round
    which = _PREDICTOR_OF.get(name)
    predictor = None
    if which is not None and common.predictors is not None:
        predictor = getattr(common.predictors, which)
    policy = make_policy(
        name,
        len(common.cameras),
        # every k-th frame with k from the budget's share of decoding it all
        stride=math.ceil(common.per_round / budget) if name == "uniform" else None,
        budget=budget,
        costs=common.costs,
        window=common.window,
        horizon=common.rounds,
        predictor=predictor,
        references=common.references,
    )
    start = time.perf_counter()
    reducto = name == "reducto" and common.model is not None
    result = run_online(
        common.cameras,
        common.model if reducto and common.model is not None else _no_model,
        common.redundancy,
        policy,
        budget,
        common.costs,
        max_rounds=common.rounds,
        references=common.references,
        infer="model" if reducto else "reference",
        burst=budget + common.costs.intra if common.bucket else None,
    )
    wall = time.perf_counter() - start
    full = result.spent_per_round if common.decode_all is None else common.decode_all
    accuracy, saved = scored(result, full, common.references, common.score_from)
    point = CurvePoint(
        task=common.task,
        policy=name,
        fraction=fraction,
        budget=fraction * common.per_round,
        accuracy=accuracy,
        saved=saved,
        rounds=result.rounds,
        decode_seconds=result.decode_seconds,
        decisions_per_second=result.decisions_per_second,
        wall_seconds=wall,
    )
    return point, result


def _no_model(images: Images) -> IntArray:
    """Stands in for the black box where results come from the references."""
    raise AssertionError("infer='reference' never calls the model")


def _check_curve_args(
    policies: Sequence[str],
    fractions: Sequence[float],
    predictors: Predictors | None,
    score_from: int,
    model: FrameModel | None,
) -> None:
    check_positive_int("score_from", score_from)
    for fraction in fractions:
        if not (math.isfinite(fraction) and fraction > 0):
            raise ValueError(f"fraction {fraction} invalid; expected a number > 0")
    if predictors is None and any(p in _PREDICTOR_OF for p in policies):
        raise ValueError("a learnt policy was asked for; expected predictors")
    if "reducto" in policies and model is None:
        raise ValueError("policy 'reducto' filters pixels; expected a model")


def saving_at_accuracy(
    points: Sequence[CurvePoint], target: float = 0.9
) -> float | None:
    """The largest decode saving at which one policy's curve keeps ``target``.

    ``points`` are one policy's (one task). Between two budgets the curve is
    linear in (saved, accuracy); the saving where it crosses ``target`` is
    interpolated. ``None`` when no point reaches ``target``.
    """
    curve = sorted(points, key=lambda p: p.saved)  # least saving first
    best: float | None = None
    for p in curve:
        if p.accuracy >= target:
            best = p.saved if best is None else max(best, p.saved)
    for a, b in itertools.pairwise(curve):
        if (a.accuracy >= target) != (b.accuracy >= target):
            t = (target - a.accuracy) / (b.accuracy - a.accuracy)
            crossing = a.saved + t * (b.saved - a.saved)
            best = crossing if best is None else max(best, crossing)
    return best


def concurrency_gain(saved: float | None) -> float | None:
    """Streams a fixed decode capacity serves, relative to decoding everything.

    A policy that decodes ``1 - saved`` of what decode-everything decodes fits
    ``1 / (1 - saved)`` times as many streams into the same capacity.
    """
    if saved is None:
        return None
    return math.inf if saved >= 1.0 else 1.0 / (1.0 - saved)


def summary(
    points: Sequence[CurvePoint], target: float = 0.9
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per task and policy: saving at ``target`` accuracy and concurrency gain.

    Returns ``{task: {policy: {"saved": s, "gain": g, "of-oracle": s / oracle}}}``
    (``None`` where the curve never reaches ``target``).
    """
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    by_task: dict[str, dict[str, list[CurvePoint]]] = {}
    for p in points:
        by_task.setdefault(p.task, {}).setdefault(p.policy, []).append(p)
    for task, curves in by_task.items():
        oracle = (
            saving_at_accuracy(curves["oracle"], target) if "oracle" in curves else None
        )
        out[task] = {}
        for name, curve in curves.items():
            saved = saving_at_accuracy(curve, target)
            of_oracle = (
                saved / oracle
                if saved is not None and oracle is not None and oracle > 0
                else None
            )
            out[task][name] = {
                "saved": saved,
                "gain": concurrency_gain(saved),
                "of-oracle": of_oracle,
            }
    return out


def rows(points: Sequence[CurvePoint]) -> list[Mapping[str, float | int | str]]:
    """The points as dicts (CSV rows, in order)."""
    return [p.as_dict() for p in points]


# ---------------------------------------------------------------- training regimes
def average_predictors(
    predictors: Sequence[ContextualPredictor], weights: Sequence[float]
) -> ContextualPredictor:
    """FedAvg of predictors of one shape: parameters averaged by ``weights``.

    The aggregation the capability's Flower strategy performs over edge
    servers, here without Flower (for side-by-side training comparisons).
    """
    if len(predictors) == 0 or len(predictors) != len(weights):
        raise ValueError(
            f"{len(predictors)} predictors and {len(weights)} weights; expected "
            "the same number, at least one"
        )
    total = float(sum(weights))
    if not (math.isfinite(total) and total > 0) or min(weights) < 0:
        raise ValueError(f"weights are {list(weights)}; expected >= 0, sum > 0")
    averaged = copy.deepcopy(predictors[0])  # the same shape and buffers
    states = [p.state_dict() for p in predictors]
    averaged.load_state_dict(
        {
            key: sum(s[key] * (w / total) for s, w in zip(states, weights, strict=True))
            for key in states[0]
        }
    )
    averaged.eval()
    return averaged


@dataclass(frozen=True)
class TrainingRegimes:
    """Predictors trained on the same edge servers' data three ways."""

    centralised: ContextualPredictor  # every server's rows pooled
    federated: ContextualPredictor  # FedAvg over servers
    local: tuple[ContextualPredictor, ...]  # one per server, its own rows only


def train_regimes(
    servers: Sequence[Sequence[CameraVideo]],
    references: Sequence[Sequence[IntArray]],
    redundancy: Redundancy,
    window: int = 5,
    epochs: int = 20,
    fed_rounds: int = 10,
    local_epochs: int = 2,
    seed: int = 0,
) -> TrainingRegimes:
    """Centralised, federated and local-only predictors on the same rows.

    Parameters
    ----------
    servers : Sequence[Sequence[CameraVideo]]
        Each edge server's cameras.
    references : Sequence[Sequence[numpy.ndarray]]
        Their reference outputs, in the same nesting.
    redundancy : Redundancy
        The task's feedback rule.
    window : int
        Predictor window.
    epochs : int
        Passes of the centralised and each local training.
    fed_rounds, local_epochs : int
        FedAvg rounds, and each server's passes per round (``fed_rounds *
        local_epochs`` passes in all, like ``epochs`` when equal).
    seed : int
        Seeds the initialisation (the same for every regime) and shuffling.

    Returns
    -------
    TrainingRegimes
        The three regimes' predictors (eval mode).
    """
    check_positive_int("fed_rounds", fed_rounds)
    check_positive_int("local_epochs", local_epochs)
    data = [
        training_data(cams, None, redundancy, window, references=refs)
        for cams, refs in zip(servers, references, strict=True)
    ]
    kernel = min(3, window)

    def fresh() -> ContextualPredictor:
        return ContextualPredictor(window, kernel=kernel, seed=seed)

    def trained(
        rows: tuple[FloatArray, BoolArray, FloatArray, FloatArray],
        n: int,
        start: ContextualPredictor | None = None,
        round_: int = 0,
    ) -> ContextualPredictor:
        model = fresh()
        if start is not None:
            model.load_state_dict(start.state_dict())
        fit(model, *rows, epochs=n, seed=seed + round_)
        return model

    pooled = tuple(np.concatenate([d[k] for d in data]) for k in range(4))
    centralised = trained(pooled, epochs)  # type: ignore[arg-type]
    local = tuple(trained(d, epochs) for d in data)
    federated = fresh()
    sizes = [float(len(d[3])) for d in data]
    for r in range(fed_rounds):
        updates = [trained(d, local_epochs, federated, r) for d in data]
        federated = average_predictors(updates, sizes)
    return TrainingRegimes(centralised=centralised, federated=federated, local=local)


def gated_accuracy(
    predictor: ContextualPredictor,
    cameras: Sequence[CameraVideo],
    references: Sequence[IntArray],
    redundancy: Redundancy,
    costs: DecodeCosts,
    fraction: float,
    *,
    window: int = 5,
    rounds: int | None = None,
) -> tuple[float, float]:
    """``(accuracy, saved)`` of PacketGame with ``predictor`` on ``cameras``.

    Every frame is scored. The budget is ``fraction`` of decoding everything,
    with a token bucket of that plus one I picture (see
    :func:`~edgecloud.packetgame.online.run_online`'s ``burst``): with the few
    streams of held-out cameras a round's mean cost is below one I picture.
    """
    decode_all = run_online(
        cameras,
        _no_model,
        redundancy,
        make_policy("decode-all", len(cameras)),
        0.0,
        costs,
        max_rounds=rounds,
        references=references,
        infer="reference",
    )
    budget = fraction * decode_all.decode_all_cost / max(decode_all.rounds, 1)
    policy = make_policy(
        "packetgame", len(cameras), window=window, horizon=rounds, predictor=predictor
    )
    result = run_online(
        cameras,
        _no_model,
        redundancy,
        policy,
        budget,
        costs,
        max_rounds=rounds,
        references=references,
        infer="reference",
        burst=budget + costs.intra,
    )
    return scored(result, decode_all.spent_per_round, references, 0)
