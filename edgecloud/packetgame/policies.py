"""Packet-gating policies for the online loop: PacketGame, its ablations, baselines.

Each policy implements :class:`~edgecloud.packetgame.online.Policy`
(``decide(inputs) -> Selection`` and ``feedback(selected, feedback)``); build one
by name with :func:`make_policy`. Every policy except decode-all spends at most the
round's budget and never chooses a packet of infinite (undecodable) cost.
:func:`train_predictor` trains the contextual predictor PacketGame needs on
training cameras.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

import numpy as np
import numpy.typing as npt

from edgecloud.data.testbed.readers import CameraVideo
from edgecloud.packetgame.decision import NEUTRAL_ESTIMATE, Mode, PacketGate
from edgecloud.packetgame.dependencies import DecodeCosts
from edgecloud.packetgame.online import (
    DEFAULT_RESULT,
    BoolArray,
    FloatArray,
    FrameModel,
    Images,
    IntArray,
    Policy,
    Redundancy,
    RoundInputs,
    reference_outputs,
)
from edgecloud.packetgame.optimizer import Selection, greedy_select
from edgecloud.packetgame.predictor import ContextualPredictor, fit
from edgecloud.packetgame.validation_utils import check_budget, check_positive_int

POLICIES: tuple[str, ...] = (
    "decode-all",
    "random",
    "uniform",
    "keyframes",
    "temporal",
    "contextual",
    "packetgame",
    "packetgame-thesis",
    "reducto",
    "oracle",
)

# The oracle's value of a redundant packet: > 0, so that spare budget still goes
# to the cheapest packets, far below a necessary packet's 1.
ORACLE_EPSILON = 1e-6


def _fill(order: npt.NDArray[np.intp], inputs: RoundInputs) -> Selection:
    """Take the streams of ``order`` whose finite cost still fits, skipping others.

    Unlike :func:`greedy_select`, a packet that does not fit does not end the
    scan (later, cheaper packets may still fit); no prefetch.
    """
    chosen = np.zeros(inputs.num_streams, dtype=bool)
    spent = 0.0
    for i in order:
        cost = float(inputs.costs[i])
        if math.isfinite(cost) and spent + cost <= inputs.budget:
            chosen[i] = True
            spent += cost
    return Selection(chosen=chosen, prefetch=None, spent=spent)


class _Subset(Sequence[FloatArray]):
    """``costs[indices[k]]`` at ``k``, read only where the optimizer looks."""

    def __init__(self, costs: Sequence[FloatArray], indices: npt.NDArray[np.intp]):
        self._costs, self._indices = costs, indices

    def __len__(self) -> int:
        return int(self._indices.size)

    @overload
    def __getitem__(self, k: int) -> FloatArray: ...

    @overload
    def __getitem__(self, k: slice) -> Sequence[FloatArray]: ...

    def __getitem__(self, k: int | slice) -> FloatArray | Sequence[FloatArray]:
        if isinstance(k, slice):
            return [self._costs[int(i)] for i in self._indices[k]]
        return self._costs[int(self._indices[k])]


def _greedy(values: FloatArray, inputs: RoundInputs) -> Selection:
    """:func:`greedy_select` (with prefetch) over the decodable streams only."""
    finite = np.flatnonzero(np.isfinite(inputs.costs))
    chosen = np.zeros(inputs.num_streams, dtype=bool)
    if finite.size == 0:
        return Selection(chosen=chosen, prefetch=None, spent=0.0)
    deps = _Subset(inputs.dependency_costs, finite)
    sub = greedy_select(values[finite], inputs.costs[finite], inputs.budget, deps)
    chosen[finite] = sub.chosen
    prefetch = None
    if sub.prefetch is not None:
        prefetch = (int(finite[sub.prefetch[0]]), sub.prefetch[1])
    return Selection(chosen=chosen, prefetch=prefetch, spent=sub.spent)


class DecodeAll:
    """Decode every decodable packet, ignoring the budget: the accuracy reference."""

    name = "decode-all"
    ignores_budget = True

    def decide(self, inputs: RoundInputs) -> Selection:
        """Every packet of finite cost."""
        chosen = np.isfinite(inputs.costs)
        return Selection(chosen, None, float(inputs.costs[chosen].sum()))

    def feedback(self, selected: BoolArray, feedback: FloatArray) -> None:
        """Unused."""


class RandomPolicy:
    """Streams in a random order each round, each taken while it fits the budget.

    Parameters
    ----------
    seed : int
        Seed of the private generator.
    """

    name = "random"
    ignores_budget = False

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def decide(self, inputs: RoundInputs) -> Selection:
        """A random order, filled greedily under the budget."""
        return _fill(self._rng.permutation(inputs.num_streams), inputs)

    def feedback(self, selected: BoolArray, feedback: FloatArray) -> None:
        """Unused."""


class UniformPolicy:
    """Every ``stride``-th frame of each stream (``frame_index % stride == 0``).

    Those packets are taken, in a rotating stream order, while they fit the
    budget (their dependencies included in their cost).

    Parameters
    ----------
    stride : int
        ``k`` (>= 1); see :func:`uniform_stride`.
    """

    name = "uniform"
    ignores_budget = False

    def __init__(self, stride: int) -> None:
        check_positive_int("stride", stride)
        self.stride = stride

    def decide(self, inputs: RoundInputs) -> Selection:
        """The round's packets on the stride, while they fit."""
        wanted = inputs.active & (inputs.frame_index % self.stride == 0)
        order = np.roll(np.arange(inputs.num_streams), -inputs.round)
        return _fill(order[wanted[order]], inputs)

    def feedback(self, selected: BoolArray, feedback: FloatArray) -> None:
        """Unused."""


def uniform_stride(budget: float, mean_cost: float, num_streams: int) -> int:
    """The stride ``k`` whose decodes fit the budget on average.

    ``ceil(num_streams * mean_cost / budget)``: decoding one frame in ``k`` of each
    of ``m`` streams costs about ``m * mean_cost / k`` per round (``mean_cost``
    includes the dependencies a strided frame drags in). A budget of 0 gives the
    stride of one frame per stream per ``m * mean_cost`` rounds.
    """
    budget_f = check_budget(budget)
    if not (math.isfinite(mean_cost) and mean_cost > 0):
        raise ValueError(f"mean_cost is {mean_cost}; expected a finite number > 0")
    return max(1, math.ceil(num_streams * mean_cost / max(budget_f, 1e-12)))


class KeyframesPolicy:
    """Random-access packets only (I / IDR / CRA / VP9 key frames), while they fit.

    Streams are scanned in a rotating order, so a tight budget still reaches
    every stream over the rounds.
    """

    name = "keyframes"
    ignores_budget = False

    def decide(self, inputs: RoundInputs) -> Selection:
        """The round's random-access packets, while they fit."""
        order = np.roll(np.arange(inputs.num_streams), -inputs.round)
        return _fill(order[inputs.random_access[order]], inputs)

    def feedback(self, selected: BoolArray, feedback: FloatArray) -> None:
        """Unused."""


class GatePolicy:
    """A :class:`PacketGate` (modes packetgame, temporal, contextual) as a policy.

    The gate refuses infinite costs: an undecodable packet is given a finite cost
    above the whole budget, so the optimizer can never take it (it ranks last by
    value per cost and has no dependencies to prefetch).

    Parameters
    ----------
    gate : PacketGate
        The configured gate.
    """

    ignores_budget = False

    def __init__(self, gate: PacketGate) -> None:
        self.gate = gate
        thesis = gate.value == "thesis"
        self.name: str = f"{gate.mode}-thesis" if thesis else gate.mode

    def decide(self, inputs: RoundInputs) -> Selection:
        """The gate's decision."""
        finite = np.isfinite(inputs.costs)
        never = inputs.budget + float(inputs.costs[finite].sum()) + 1.0
        costs = np.where(finite, inputs.costs, never)
        selection = self.gate.decide(
            inputs.sizes, inputs.is_intra, costs, inputs.dependency_costs, inputs.budget
        )
        assert not np.any(selection.chosen & ~finite)
        return selection

    def feedback(self, selected: BoolArray, feedback: FloatArray) -> None:
        """The gate's temporal estimator records the feedback."""
        self.gate.feedback(selected, feedback)


class ReductoPolicy:
    """Reducto-style frame-difference filter: decodes everything, skips inference.

    The filter compares pixels, so every frame must be decoded: it saves no
    decoding (its decode cost is decode-all's, and it ignores the budget). A
    decoded frame is inferred only when its mean absolute pixel difference from
    the stream's last inferred frame, in [0, 1], exceeds ``threshold``; otherwise
    the last inferred result is served.

    Parameters
    ----------
    threshold : float
        Difference threshold in [0, 1].
    """

    name = "reducto"
    ignores_budget = True

    def __init__(self, threshold: float = 0.02) -> None:
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold is {threshold}; expected a number in [0, 1]")
        self.threshold = threshold
        self._last: dict[int, npt.NDArray[np.float32]] = {}

    def decide(self, inputs: RoundInputs) -> Selection:
        """Every packet of finite cost."""
        chosen = np.isfinite(inputs.costs)
        return Selection(chosen, None, float(inputs.costs[chosen].sum()))

    def feedback(self, selected: BoolArray, feedback: FloatArray) -> None:
        """Unused."""

    def should_infer(self, stream: int, image: Images) -> bool:
        """True when ``image`` differs enough from the last inferred frame."""
        pixels = image.astype(np.float32) / 255.0
        last = self._last.get(stream)
        if (
            last is not None
            and last.shape == pixels.shape
            and float(np.abs(pixels - last).mean()) <= self.threshold
        ):
            return False
        self._last[stream] = pixels
        return True


class OraclePolicy:
    """Knows the true outputs: the upper bound of any gate at the same budget.

    A packet's value is 1 where its frame's reference output differs from the
    result the frame would otherwise be served (decoding it is necessary for
    accuracy, whatever the task's feedback rule), else ``ORACLE_EPSILON``; then
    greedy by value per dependency-aware cost with prefetch, as PacketGame's
    optimizer.

    Parameters
    ----------
    references : Sequence[numpy.ndarray]
        Per stream, :func:`~edgecloud.packetgame.online.reference_outputs`.
    """

    name = "oracle"
    ignores_budget = False

    def __init__(self, references: Sequence[IntArray]) -> None:
        self.references = [np.asarray(r, dtype=np.int64) for r in references]

    def decide(self, inputs: RoundInputs) -> Selection:
        """Greedy on the true values."""
        values = np.full(inputs.num_streams, ORACLE_EPSILON)
        for i in np.flatnonzero(inputs.active):
            f = int(inputs.frame_index[i])
            ref = self.references[i]
            if f < len(ref) and int(ref[f]) != int(inputs.previous_results[i]):
                values[i] = 1.0
        return _greedy(values, inputs)

    def feedback(self, selected: BoolArray, feedback: FloatArray) -> None:
        """Unused."""


def make_policy(
    name: str,
    num_streams: int,
    *,
    budget: float | None = None,
    costs: DecodeCosts | None = None,
    window: int = 5,
    horizon: int | None = None,
    predictor: ContextualPredictor | None = None,
    references: Sequence[IntArray] | None = None,
    stride: int | None = None,
    threshold: float = 0.02,
    seed: int = 0,
) -> Policy:
    """The policy called ``name`` (one of :data:`POLICIES`).

    Parameters
    ----------
    name : str
        Policy name.
    num_streams : int
        Streams ``m``.
    budget : float | None
        Round budget; "uniform" needs it (with ``costs``) unless ``stride`` is
        given.
    costs : DecodeCosts | None
        Calibrated costs; "uniform" sizes its stride with the P cost.
    window : int
        Gate window (temporal, contextual, packetgame).
    horizon : int | None
        Gate horizon ``T`` (see :class:`PacketGate`).
    predictor : ContextualPredictor | None
        Trained predictor; "contextual" and "packetgame" need it.
    references : Sequence[numpy.ndarray] | None
        Reference outputs; "oracle" needs them.
    stride : int | None
        "uniform"'s ``k``; ``None`` uses :func:`uniform_stride`.
    threshold : float
        "reducto"'s pixel-difference threshold.
    seed : int
        "random"'s seed.

    Returns
    -------
    Policy
        The policy.

    Raises
    ------
    ValueError
        On an unknown name (naming it) or a missing argument the policy needs.
    """
    check_positive_int("num_streams", num_streams)
    if name == "decode-all":
        return DecodeAll()
    if name == "random":
        return RandomPolicy(seed)
    if name == "uniform":
        if stride is None:
            if budget is None or costs is None:
                raise ValueError(
                    "policy 'uniform' without a stride expected budget and costs"
                )
            stride = uniform_stride(budget, costs.predicted, num_streams)
        return UniformPolicy(stride)
    if name == "keyframes":
        return KeyframesPolicy()
    if name in ("temporal", "contextual", "packetgame", "packetgame-thesis"):
        mode: Mode = (
            "temporal"
            if name == "temporal"
            else ("contextual" if name == "contextual" else "packetgame")
        )
        gate = PacketGate(
            num_streams,
            window,
            horizon=horizon,
            predictor=None if mode == "temporal" else predictor,
            mode=mode,
            value="thesis" if name == "packetgame-thesis" else "staleness",
        )
        return GatePolicy(gate)
    if name == "reducto":
        return ReductoPolicy(threshold)
    if name == "oracle":
        if references is None:
            raise ValueError("policy 'oracle' expected references")
        if len(references) != num_streams:
            raise ValueError(
                f"references has {len(references)} entries; expected {num_streams}"
            )
        return OraclePolicy(references)
    raise ValueError(f"policy {name!r} unknown; expected one of {POLICIES}")


def _windows(values: FloatArray, window: int) -> FloatArray:
    """``(n, window)`` trailing windows of ``values`` (oldest first, zero-padded)."""
    padded = np.concatenate((np.zeros(window - 1), values))
    return np.lib.stride_tricks.sliding_window_view(padded, window).copy()


def training_data(
    cameras: Sequence[CameraVideo],
    model: FrameModel | None,
    redundancy: Redundancy,
    window: int,
    *,
    size: tuple[int, int] | None = None,
    neutral: bool = False,
    references: Sequence[IntArray] | None = None,
    frame_limit: int | None = None,
) -> tuple[FloatArray, BoolArray, FloatArray, FloatArray]:
    """Predictor training rows from a decode-everything pass over ``cameras``.

    One row per packet, in each camera's decode order: the size and I-flag windows
    of the last ``window`` packets (the gate's :class:`PacketWindows`), an
    estimate, and the label ``redundancy(ref[f], ref[f - 1])`` of the packet's
    frame ``f`` (``DEFAULT_RESULT`` before frame 0): was decoding it necessary if
    every frame were decoded. The estimate stands in for the gate's temporal
    estimate: the mean label of the stream's previous ``window`` packets
    smoothed by one pseudo-observation ``NEUTRAL_ESTIMATE``, as
    :meth:`~edgecloud.packetgame.temporal.TemporalEstimator.means` (and
    ``NEUTRAL_ESTIMATE`` everywhere with ``neutral``, the contextual-only
    ablation). ``references`` (per camera,
    :func:`reference_outputs`) skips recomputing them. ``frame_limit`` keeps the
    rows of frames before it only (train on the past of the cameras a gate will
    serve, evaluate on their future).

    Returns
    -------
    tuple
        ``sizes (n, w)``, ``is_intra (n, w)``, ``estimates (n,)``, ``labels (n,)``.
    """
    check_positive_int("window", window)
    if frame_limit is not None:
        check_positive_int("frame_limit", frame_limit)
    if references is None and model is None:
        raise ValueError("model and references are None; expected one of them")
    if references is not None and len(references) != len(cameras):
        raise ValueError(
            f"references has {len(references)} entries; expected {len(cameras)}"
        )
    sizes, intra, estimates, labels = [], [], [], []
    for k, camera in enumerate(cameras):
        ref = (
            np.asarray(references[k], dtype=np.int64)
            if references is not None
            else reference_outputs(camera, model, size)  # type: ignore[arg-type]
        )
        infos = [info for info, _ in camera.packets()]
        frame = np.array([p.frame_index for p in infos], dtype=np.int64)
        previous = np.where(frame > 0, ref[np.maximum(frame - 1, 0)], DEFAULT_RESULT)
        pairs = zip(ref[frame], previous, strict=True)
        label = np.array([redundancy(int(a), int(b)) for a, b in pairs])
        sizes.append(_windows(np.array([p.size for p in infos], np.float64), window))
        flags = np.array([p.picture_type == "I" for p in infos], dtype=np.float64)
        intra.append(_windows(flags, window).astype(bool))
        if neutral:
            estimate = np.full(label.shape, NEUTRAL_ESTIMATE)
        else:
            history = _windows(np.concatenate(([np.nan], label[:-1])), window)
            seen = np.isfinite(history).sum(axis=1)
            total = np.nansum(history, axis=1)
            # the gate's smoothed mean (TemporalEstimator.means)
            estimate = (total + NEUTRAL_ESTIMATE) / (seen + 1.0)
        keep = frame < (frame_limit if frame_limit is not None else frame.max() + 1)
        sizes[-1], intra[-1] = sizes[-1][keep], intra[-1][keep]
        estimates.append(estimate[keep])
        labels.append(label[keep])
    return (
        np.concatenate(sizes),
        np.concatenate(intra),
        np.concatenate(estimates),
        np.concatenate(labels),
    )


def train_predictor(
    cameras: Sequence[CameraVideo],
    model: FrameModel | None,
    redundancy: Redundancy,
    window: int = 5,
    epochs: int = 20,
    seed: int = 0,
    *,
    size: tuple[int, int] | None = None,
    neutral: bool = False,
    lr: float = 1e-3,
    references: Sequence[IntArray] | None = None,
    frame_limit: int | None = None,
) -> ContextualPredictor:
    """A :class:`ContextualPredictor` trained on TRAINING cameras (RMSprop + BCE).

    Rows from :func:`training_data`; :func:`~edgecloud.packetgame.predictor.fit`
    trains it. Use ``neutral=True`` for the contextual-only ablation's predictor
    (its temporal input is the constant the gate feeds in that mode).

    Parameters
    ----------
    cameras : Sequence[CameraVideo]
        Training cameras (never the evaluation ones).
    model : FrameModel | None
        The black box whose redundancy is learnt (``None`` with ``references``).
    redundancy : Redundancy
        The task's redundancy function.
    window : int
        Predictor (and gate) window ``w``.
    epochs : int
        Training passes.
    seed : int
        Seeds the initialisation and the shuffling.
    size : tuple[int, int] | None
        Model input ``(w, h)``.
    neutral : bool
        Train with ``NEUTRAL_ESTIMATE`` as the temporal input.
    lr : float
        RMSprop learning rate.
    references : Sequence[numpy.ndarray] | None
        Per camera, its :func:`reference_outputs` (computed when ``None``).
    frame_limit : int | None
        Train on the packets of frames before this index only.

    Returns
    -------
    ContextualPredictor
        The trained predictor (eval mode).
    """
    if len(cameras) == 0:
        raise ValueError("cameras is empty; expected at least one training camera")
    sizes, intra, estimates, labels = training_data(
        cameras,
        model,
        redundancy,
        window,
        size=size,
        neutral=neutral,
        references=references,
        frame_limit=frame_limit,
    )
    kernel = min(3, window)
    predictor = ContextualPredictor(window, kernel=kernel, seed=seed)
    fit(predictor, sizes, intra, estimates, labels, epochs=epochs, lr=lr, seed=seed)
    return predictor
