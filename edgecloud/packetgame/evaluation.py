"""Accuracy against decode budget, per policy: the figures of PacketGame's benchmark.

:func:`budget_curve` runs policies online
(:func:`~edgecloud.packetgame.online.run_online`) at budgets given as fractions of
decoding everything, trains the learnt policies on the past of the cameras (frames
before ``split``) and scores only their future (frames from ``split`` on, both accuracy
and decode spent), so no policy is scored on what it was trained on.
:func:`saving_at_accuracy` reads a curve at a target accuracy (the thesis' "decode saved
at 90 % accuracy") and :func:`concurrency_gain` turns that into how many more streams a
fixed decode capacity serves.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from edgecloud.data.testbed.readers import CameraVideo
from edgecloud.packetgame.dependencies import DecodeCosts
from edgecloud.packetgame.online import (
    FrameModel,
    Images,
    IntArray,
    OnlineResult,
    Redundancy,
    run_online,
)
from edgecloud.packetgame.policies import make_policy, train_predictor
from edgecloud.packetgame.predictor import ContextualPredictor
from edgecloud.packetgame.validation_utils import check_positive_int

# Policies whose predictor is trained (which one they need).
_PREDICTOR_OF = {
    "packetgame": "fused",
    "packetgame-thesis": "fused",
    "contextual": "neutral",
}


@dataclass(frozen=True)
class CurvePoint:
    """One policy at one budget, scored on the frames from ``split`` on."""

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
    split: int,
    epochs: int = 10,
    seed: int = 0,
) -> Predictors:
    """Both predictors, trained on the packets of frames before ``split``."""

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
            frame_limit=split,
        )

    return Predictors(fused=train(False), neutral=train(True))


def scored(
    result: OnlineResult,
    decode_all: OnlineResult,
    references: Sequence[IntArray],
    split: int,
) -> tuple[float, float]:
    """``(accuracy, saved)`` of ``result`` over frames and rounds from ``split`` on.

    Accuracy: the share of those frames served the reference result; saved:
    ``1 - spent / decode_all's spent`` over the same rounds.
    """
    hits = frames = 0
    for served, ref in zip(result.served, references, strict=True):
        end = min(len(served), len(ref), result.rounds)
        hits += int(np.sum(served[split:end] == ref[split:end]))
        frames += max(0, end - split)
    spent = float(result.spent_per_round[split:].sum())
    full = float(decode_all.spent_per_round[split:].sum())
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
    split: int,
    rounds: int | None = None,
    window: int = 5,
    model: FrameModel | None = None,
    progress: Callable[[str], None] | None = None,
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
    split : int
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
    _check_curve_args(policies, fractions, predictors, split, model)
    m = len(cameras)

    def run(name: str, budget: float) -> tuple[OnlineResult, float]:
        which = _PREDICTOR_OF.get(name)
        predictor = None
        if which is not None and predictors is not None:
            predictor = getattr(predictors, which)
        policy = make_policy(
            name,
            m,
            # every k-th frame with k from the budget's share of decoding it all
            stride=math.ceil(per_round / budget) if name == "uniform" else None,
            budget=budget,
            costs=costs,
            window=window,
            horizon=rounds,
            predictor=predictor,
            references=references,
        )
        start = time.perf_counter()
        result = run_online(
            cameras,
            model if name == "reducto" and model is not None else _no_model,
            redundancy,
            policy,
            budget,
            costs,
            max_rounds=rounds,
            references=references,
            infer="model" if name == "reducto" else "reference",
        )
        return result, time.perf_counter() - start

    per_round = 1.0  # set from decode-all's run before any other policy runs
    decode_all, wall = run("decode-all", 0.0)
    per_round = decode_all.decode_all_cost / max(decode_all.rounds, 1)
    points: list[CurvePoint] = []

    def add(name: str, fraction: float, result: OnlineResult, wall: float) -> None:
        accuracy, saved = scored(result, decode_all, references, split)
        points.append(
            CurvePoint(
                task=task,
                policy=name,
                fraction=fraction,
                budget=fraction * per_round,
                accuracy=accuracy,
                saved=saved,
                rounds=result.rounds,
                decode_seconds=result.decode_seconds,
                decisions_per_second=result.decisions_per_second,
                wall_seconds=wall,
            )
        )
        if progress is not None:
            progress(
                f"{task} {name} at {fraction:.2f}: accuracy {accuracy:.3f}, "
                f"saved {saved:.3f}"
            )

    add("decode-all", 1.0, decode_all, wall)
    for name in policies:
        if name == "decode-all":
            continue
        if name == "reducto":
            result, wall = run(name, per_round)
            add(name, 1.0, result, wall)
            continue
        for fraction in fractions:
            result, wall = run(name, fraction * per_round)
            add(name, fraction, result, wall)
    return points


def _no_model(images: Images) -> IntArray:
    """Stands in for the black box where results come from the references."""
    raise AssertionError("infer='reference' never calls the model")


def _check_curve_args(
    policies: Sequence[str],
    fractions: Sequence[float],
    predictors: Predictors | None,
    split: int,
    model: FrameModel | None,
) -> None:
    check_positive_int("split", split)
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
