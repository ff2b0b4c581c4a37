"""The online PacketGame loop over live streams: gate, gated decode, infer, serve.

Each round (tick) one packet of every live stream arrives (PacketGame, thesis
chapter 2). Its dependency-aware decode cost comes from
:class:`~edgecloud.packetgame.dependencies.DependencyState`; a policy
(:mod:`edgecloud.packetgame.policies`) chooses which packets to decode under the
round's budget; each chosen packet and the undecoded packets it needs are fed to
its stream's :class:`~edgecloud.packetgame.gated_decoder.GatedDecoder`; the black
box runs on the frames that come out (one batch per round); every frame is served
the result of the latest decoded frame at or before it in display order
(:func:`serve`). Accuracy is the thesis' definition: the share of frames whose
served result equals the result a decode-everything pipeline gives
(:func:`reference_outputs`).
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import av
import numpy as np
import numpy.typing as npt

from edgecloud.data.testbed.readers import UNREADABLE, CameraVideo, PacketInfo
from edgecloud.packetgame.dependencies import (
    Arrivals,
    DecodeCosts,
    DependencyCosts,
    DependencyState,
)
from edgecloud.packetgame.gated_decoder import GatedDecoder, GatedFrame, StreamCodec
from edgecloud.packetgame.optimizer import Selection
from edgecloud.packetgame.validation_utils import check_budget, check_positive_int

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
Images = npt.NDArray[np.uint8]

logger = logging.getLogger(__name__)

# What a frame is served before its stream decoded anything (class 0: the
# testbed's "nothing"/"no event" class of every black box).
DEFAULT_RESULT = 0

# Slack of the per-round budget check (the optimizer sums costs in another order).
_BUDGET_SLACK = 1e-9

FrameModel = Callable[[Images], npt.NDArray[np.int64]]
"""A black box: frames ``(N, H, W, 3)`` uint8 -> class indices ``(N,)``."""

Redundancy = Callable[[int, int], float]
"""``redundancy(result, last) -> feedback in [0, 1]`` (1 = decoding was necessary)."""


# ---------------------------------------------------------------------- rules
def count_changed(result: int, last: int) -> float:
    """1.0 when the result (a count) differs from the stream's last served one.

    Decoding was necessary exactly when it changed what is served.
    """
    return 1.0 if int(result) != int(last) else 0.0


def event_present(result: int, last: int) -> float:
    """1.0 when the result is an event class (not class 0), whatever came before."""
    del last  # the event task values every frame with an event
    return 1.0 if int(result) != 0 else 0.0


def serve(
    arrival_round: npt.ArrayLike,
    decoded: Mapping[int, int],
    decoded_round: Mapping[int, int],
    default: int = DEFAULT_RESULT,
) -> tuple[IntArray, IntArray]:
    """The result each frame of a stream is served, causally.

    Frame ``f`` is served when it arrives (round ``arrival_round[f]``): the result
    of the latest frame ``g <= f`` in display order whose packet was decoded by
    then (``decoded_round[g] <= arrival_round[f]``), or ``default`` when there is
    none. A frame decoded later (a dependency fetched for a later packet) never
    serves frames that arrived before it was decoded. A frame is credited in the
    round its packet was fed to the decoder, as decode-everything is credited in
    its packet's arrival round; the decoder's display-reordering buffer, which
    releases a picture only when later pictures are fed, is not charged.

    Parameters
    ----------
    arrival_round : array_like of int
        ``(n,)`` per display index, the round its packet arrived (< 0: never).
    decoded : Mapping[int, int]
        Display index -> result of every decoded frame.
    decoded_round : Mapping[int, int]
        Display index -> round its packet was decoded (every key of ``decoded``).
    default : int
        Result served before any frame was decoded.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        ``served (n,)``, and ``without (n,)``: what each frame would be served if
        it had not been decoded itself (the same rule over ``g < f``); both
        ``default`` for frames that never arrived.
    """
    arrival = np.asarray(arrival_round, dtype=np.int64)
    served = np.full(arrival.shape, default, dtype=np.int64)
    without = served.copy()
    ready = sorted((decoded_round[g], g) for g in decoded)
    known: list[int] = []  # display indices decoded so far, sorted
    k = 0
    for f in np.argsort(arrival, kind="stable"):
        if arrival[f] < 0:
            continue
        while k < len(ready) and ready[k][0] <= arrival[f]:
            bisect.insort(known, ready[k][1])
            k += 1
        upto = bisect.bisect_right(known, int(f))
        before = bisect.bisect_left(known, int(f))
        served[f] = decoded[known[upto - 1]] if upto else default
        without[f] = decoded[known[before - 1]] if before else default
    return served, without


def previous_result(
    order: Sequence[int],
    decoded: Mapping[int, int],
    frame_index: int,
    default: int = DEFAULT_RESULT,
) -> int:
    """The result served to the frame just before ``frame_index``.

    That is the result of the latest decoded frame strictly before ``frame_index``
    in display order (``default`` when there is none): what :func:`serve` gives
    frame ``frame_index - 1`` with what is decoded so far.

    Parameters
    ----------
    order : Sequence[int]
        The decoded display indices, sorted ascending.
    decoded : Mapping[int, int]
        Display index -> result of those frames.
    frame_index : int
        The frame whose predecessor's served result is wanted.
    default : int
        Result served before any frame was decoded.
    """
    position = bisect.bisect_left(order, frame_index)
    return decoded[order[position - 1]] if position else default


# ---------------------------------------------------------------------- frames
def resize_frames(images: Images, size: tuple[int, int] | None) -> Images:
    """Rescale RGB frames ``(N, H, W, 3)`` to ``size = (w, h)`` (area averaging).

    The loop and :func:`reference_outputs` both use this, so a gated frame and the
    full decode's frame reach the model as the same array. ``None`` or the frames'
    own size returns them unchanged.
    """
    if size is None or images.shape[1:3] == (size[1], size[0]):
        return images
    out = np.empty((images.shape[0], size[1], size[0], 3), dtype=np.uint8)
    for i, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        out[i] = frame.to_ndarray(
            format="rgb24", width=size[0], height=size[1], interpolation="AREA"
        )
    return out


def _predict(model: FrameModel, images: Images) -> IntArray:
    """The model's ``(N,)`` class indices, checked."""
    if images.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    out = np.asarray(model(images))
    if out.shape != (images.shape[0],):
        raise ValueError(
            f"model returned shape {out.shape} for {images.shape[0]} frames; "
            "expected one class index per frame"
        )
    return out.astype(np.int64)


def reference_outputs(
    camera: CameraVideo,
    model: FrameModel,
    size: tuple[int, int] | None = None,
    batch_size: int = 64,
) -> IntArray:
    """The model on every frame of ``camera``: the decode-everything truth.

    Parameters
    ----------
    camera : CameraVideo
        The camera; decoded in full by its own container (independent of the
        gated decoders).
    model : FrameModel
        The black box.
    size : tuple[int, int] | None
        Model input ``(w, h)`` (see :func:`resize_frames`); ``None``: coded size.
    batch_size : int
        Frames per model call.

    Returns
    -------
    numpy.ndarray
        ``(num_frames,)`` int64 results in display order.
    """
    check_positive_int("batch_size", batch_size)
    results: dict[int, int] = {}
    indices: list[int] = []
    images: list[Images] = []

    def flush() -> None:
        if images:
            out = _predict(model, resize_frames(np.stack(images), size))
            results.update(zip(indices, (int(r) for r in out), strict=True))
            indices.clear()
            images.clear()

    for frame in camera.frames():
        indices.append(frame.frame_index)
        images.append(frame.image)
        if len(images) >= batch_size:
            flush()
    flush()
    num_frames = max(results) + 1 if results else 0
    if set(results) != set(range(num_frames)):
        raise ValueError(f"{camera.path}: decoded frame indices are not contiguous")
    return np.array([results[i] for i in range(num_frames)], dtype=np.int64)


# ---------------------------------------------------------------------- policy
@dataclass(frozen=True, eq=False)
class RoundInputs:
    """What a policy sees in one round, each array ``(m,)``.

    ``costs`` are dependency-aware (``inf``: the packet cannot be decoded
    correctly, or its stream has ended: never choose it); ``own_costs`` the
    packet's own calibrated cost; ``dependency_costs[i]`` the costs of the
    undecoded packets stream ``i``'s packet needs, in decode order (for a
    prefetch); ``previous_results[i]`` the result served to the frame just before
    stream ``i``'s arriving frame (see :func:`previous_result`): only an oracle may
    compare it with the truth. Ended streams have ``active`` False, size 0 and
    frame index -1.
    """

    round: int
    sizes: FloatArray
    is_intra: BoolArray
    random_access: BoolArray
    frame_index: IntArray
    active: BoolArray
    costs: FloatArray
    own_costs: FloatArray
    dependency_costs: Sequence[FloatArray]
    previous_results: IntArray
    budget: float

    @property
    def num_streams(self) -> int:
        """Number of streams ``m``."""
        return int(self.costs.shape[0])


class Policy(Protocol):
    """A packet-gating policy: a decision per round, then its feedback."""

    name: str
    ignores_budget: bool  # True only for the decode-all reference

    def decide(self, inputs: RoundInputs) -> Selection:
        """Which of the round's packets to decode (``spent <= budget``)."""

    def feedback(self, selected: BoolArray, feedback: FloatArray) -> None:
        """Redundancy feedback ``(m,)`` of the streams with ``selected`` True."""


@runtime_checkable
class InferenceFilter(Protocol):
    """A policy that may skip inference on a decoded frame (Reducto-style)."""

    def should_infer(self, stream: int, image: Images) -> bool:
        """False: serve the stream's last inferred result for this frame instead."""


# ---------------------------------------------------------------------- results
@dataclass(frozen=True)
class StreamResult:
    """One stream's numbers in :class:`OnlineResult`."""

    camera_id: int
    frames: int  # frames that arrived (scored)
    frames_decoded: int
    accuracy: float
    spent: float  # calibrated cost of the packets decoded for it
    decode_all_cost: float


@dataclass(frozen=True, eq=False)
class RoundLog:
    """Per-round log a predictor can be trained on, each array ``(rounds, m)``.

    ``labels``: the redundancy feedback of each decoded packet's frame against the
    result it would have been served without it (:func:`serve`'s ``without``);
    NaN where the packet was not decoded or its stream had ended.
    """

    sizes: FloatArray
    is_intra: BoolArray
    active: BoolArray
    chosen: BoolArray
    frame_index: IntArray
    labels: FloatArray


@dataclass(frozen=True, eq=False)
class OnlineResult:
    """Outcome of :func:`run_online`.

    ``accuracy``: share of arrived frames (all streams) served the reference
    result. ``spent`` / ``decode_all_cost``: calibrated cost of what was decoded
    (prefetches included) and of decoding every arrived packet; ``saved`` is
    ``1 - spent / decode_all_cost``. ``decode_seconds``: wall time of the gated
    decoders' calls. ``decision_seconds``: wall time of the policy's calls;
    ``decisions_per_second``: packets decided per second of it.
    """

    policy: str
    budget: float
    accuracy: float
    spent: float
    decode_all_cost: float
    saved: float
    decode_seconds: float
    decision_seconds: float
    decisions_per_second: float
    frames: int
    frames_decoded: int
    inferences: int
    packets_fed: int
    dropped_frames: int
    decode_failures: int  # packets a decoder refused (its stream skipped to a key)
    unreadable_packets: int  # packets whose headers did not parse (never chosen)
    rounds: int
    spent_per_round: FloatArray
    per_stream: tuple[StreamResult, ...]
    served: tuple[IntArray, ...]
    log: RoundLog = field(repr=False)


# ---------------------------------------------------------------------- the loop
class _Stream:
    """One live stream's packets, decoder and served results."""

    def __init__(
        self,
        camera: CameraVideo,
        size: tuple[int, int] | None,
        reference: IntArray,
        images: bool,
    ) -> None:
        with av.open(str(camera.path)) as container:
            codec = StreamCodec.of(container.streams.video[0])
        self.camera = camera
        self.size = size
        self.reference = reference
        # coded size: resized by resize_frames
        self.decoder = GatedDecoder(codec, images=images)
        self.packets: Iterator[tuple[PacketInfo, object]] = iter(
            camera.packets(unreadable="mark")
        )
        self.unreadable = 0  # packets whose headers did not parse
        self.by_id: dict[int, PacketInfo] = {}
        self.arrival: dict[int, int] = {}  # display index -> round it arrived
        self.decoded: dict[int, int] = {}  # display index -> result (frames out)
        self.order: list[int] = []  # sorted keys of decoded
        self.decoded_round: dict[int, int] = {}  # display index -> round fed
        self.fed: list[int] = []  # sorted display indices of the packets fed
        self.spent = 0.0
        self.decode_all_cost = 0.0
        self.last_inferred = DEFAULT_RESULT

    def next_packet(self, round_: int) -> PacketInfo | None:
        item = next(self.packets, None)
        if item is None:
            return None
        packet = item[0]
        self.unreadable += packet.picture_type == UNREADABLE
        # kept until the end: a later packet may need any packet of its GOP
        self.by_id[packet.decode_index] = packet
        self.arrival[packet.frame_index] = round_
        return packet

    def fed_now(self, frame_index: int, round_: int) -> None:
        self.decoded_round[frame_index] = round_
        bisect.insort(self.fed, frame_index)

    def served_before(self, frame_index: int) -> int:
        """What frame ``frame_index`` is served if it is not decoded now.

        The result of the latest packet fed before it in display order; a frame
        fed but still held for reordering has no result yet: its reference
        result stands in (equal, by the gated decoder's bit-identity).
        """
        position = bisect.bisect_left(self.fed, frame_index)
        if not position:
            return DEFAULT_RESULT
        g = self.fed[position - 1]
        if g in self.decoded:
            return self.decoded[g]
        return int(self.reference[g]) if g < len(self.reference) else DEFAULT_RESULT

    def record(self, frame_index: int, result: int) -> None:
        self.decoded[frame_index] = result
        bisect.insort(self.order, frame_index)


def _arrivals(packets: Sequence[PacketInfo | None], costs: DecodeCosts) -> Arrivals:
    """The round's arrivals; an ended stream gets an inert placeholder."""
    live = [p for p in packets if p is not None]
    assert live, "a round needs at least one live stream"
    filler = live[0]
    # an unreadable packet is priced as a P picture but never decodable
    types = [(p or filler).picture_type for p in packets]
    broken = np.array([t == UNREADABLE for t in types]) & np.array(
        [p is not None for p in packets]
    )
    types = ["P" if t == UNREADABLE else t for t in types]
    present = np.array([p is not None for p in packets])
    return Arrivals(
        cost=costs.of(types),
        random_access=np.array([bool(p and p.random_access) for p in packets]),
        reference=np.array([bool(p and p.reference) for p in packets]),
        rasl=np.array([bool(p and p.leading == "RASL") for p in packets]),
        leading=np.array([bool(p and p.leading != "") for p in packets]),
        ids=np.where(
            present, [p.decode_index if p else -1 for p in packets], -1
        ).astype(np.int64),
        broken=broken,
    )


def _check_selection(
    policy: Policy, selection: Selection, inputs: RoundInputs
) -> float:
    """The round's cost recomputed from the inputs; errors on a bad selection."""
    chosen = np.asarray(selection.chosen)
    m = inputs.num_streams
    if chosen.shape != (m,) or chosen.dtype != np.bool_:
        raise ValueError(
            f"policy {policy.name!r} chose shape {chosen.shape} dtype {chosen.dtype}; "
            f"expected bool ({m},)"
        )
    if np.any(chosen & ~np.isfinite(inputs.costs)):
        bad = int(np.flatnonzero(chosen & ~np.isfinite(inputs.costs))[0])
        raise ValueError(
            f"policy {policy.name!r} chose stream {bad}, which cannot be decoded "
            "(infinite cost or ended)"
        )
    spent = float(inputs.costs[chosen].sum())
    if selection.prefetch is not None:
        stream, count = selection.prefetch
        spent += float(np.sum(inputs.dependency_costs[stream][:count]))
    if not policy.ignores_budget and spent > inputs.budget * (1 + _BUDGET_SLACK):
        raise ValueError(
            f"policy {policy.name!r} spent {spent} in round {inputs.round}; "
            f"expected at most the budget {inputs.budget}"
        )
    return spent


def run_online(
    cameras: Sequence[CameraVideo],
    model: FrameModel,
    redundancy: Redundancy,
    policy: Policy,
    budget: float,
    costs: DecodeCosts,
    *,
    size: tuple[int, int] | None = None,
    max_rounds: int | None = None,
    references: Sequence[IntArray] | None = None,
    infer: Literal["model", "reference"] = "model",
    burst: float | None = None,
) -> OnlineResult:
    """Run ``policy`` online over ``cameras`` as concurrent live streams.

    Per round: one packet per live stream arrives (streams that ended drop out:
    they offer nothing and cost nothing); :class:`DependencyState` gives each
    packet's dependency-aware cost (``inf``: undecodable, never chosen); the
    policy returns a :class:`Selection` within ``budget`` (checked every round;
    decode-all alone ignores it); each chosen stream's needed packets (and a prefetch's
    ids) are fed to its :class:`GatedDecoder`, timed with ``perf_counter``; the model
    runs once on every frame that came out this round; each such frame's result is
    recorded for its display index (``infer="reference"``: read from ``references``
    instead, without converting or inferring the frame: the same results, because gated
    frames are bit-identical to a full decode's, and much faster). The policy's feedback
    is, for every stream whose decoder output a frame this round, the largest
    ``redundancy(result, previous)`` over those frames, with ``previous`` the result
    served to the frame before it (:func:`previous_result`): with B-frames a chosen
    picture may come out a round or more later, so the feedback goes to the streams that
    output frames (``selected``), not to the chosen ones. At the end the decoders are
    drained and every arrived frame is served by :func:`serve`: causally, the result of
    the latest frame before it decoded by its arrival round (``DEFAULT_RESULT`` before a
    stream's first decoded frame).

    Parameters
    ----------
    cameras : Sequence[CameraVideo]
        The live streams (``m`` >= 1).
    model : FrameModel
        Black box: ``(N, H, W, 3)`` uint8 -> ``(N,)`` class indices.
    redundancy : Redundancy
        Feedback of a decoded frame's result vs the previous served one
        (:func:`count_changed`, :func:`event_present`).
    policy : Policy
        The gating policy (:func:`edgecloud.packetgame.policies.make_policy`).
    budget : float
        Decode budget per round, in the unit of ``costs`` (finite, >= 0).
    costs : DecodeCosts
        Calibrated cost per picture type (:func:`calibrate_decode_costs`).
    size : tuple[int, int] | None
        Model input ``(w, h)``; ``None``: the coded size.
    max_rounds : int | None
        Stop after this many rounds (``None``: when every stream ended).
    references : Sequence[numpy.ndarray] | None
        Per camera, :func:`reference_outputs` (computed when ``None``).
    infer : {"model", "reference"}
        Run ``model`` on the decoded frames, or read their results from
        ``references`` (a policy that filters frames by their pixels, such as
        Reducto, needs "model").
    burst : float | None
        ``None``: each round may spend ``budget`` and no more (the thesis).
        A number (>= ``budget``): a token bucket of that size; each round adds
        ``budget`` to it, the policy may spend what it holds, and what it leaves
        carries over (a decoder that may lag a little behind the streams). With
        few streams the mean cost of a round can be below one I picture, which a
        strict per-round budget can never pay; a bucket of ``budget`` + one I
        picture can.

    Returns
    -------
    OnlineResult
        Accuracy, cost, timings, per-stream numbers, served results and the log.

    Raises
    ------
    ValueError
        On a negative or non-finite budget, no cameras, a bad ``max_rounds``, a
        bad ``infer``, or a policy that chose an undecodable packet or overspent.
    """
    budget_f = check_budget(budget)
    filter_ = policy if isinstance(policy, InferenceFilter) else None
    _check_run_args(cameras, policy, max_rounds, infer)
    if burst is not None and not (math.isfinite(burst) and burst >= budget_f):
        raise ValueError(
            f"burst is {burst}; expected a finite number >= the budget {budget_f}"
        )
    tokens = 0.0
    if references is None:
        references = [reference_outputs(c, model, size) for c in cameras]
    if len(references) != len(cameras):
        raise ValueError(
            f"references has {len(references)} entries; expected {len(cameras)}"
        )
    images = infer == "model"
    streams = [
        _Stream(camera, size, np.asarray(ref, dtype=np.int64), images)
        for camera, ref in zip(cameras, references, strict=True)
    ]
    m = len(streams)
    state = DependencyState(m)
    live = np.ones(m, dtype=bool)
    frame_model = model if images else None
    log: dict[str, list[npt.NDArray[np.generic]]] = {
        k: [] for k in ("sizes", "intra", "active", "chosen", "frame")
    }
    spent_rounds: list[float] = []
    decode_s = decision_s = 0.0
    decided = inferences = 0
    round_ = 0
    while max_rounds is None or round_ < max_rounds:
        # ---------------------------------------------------------- arrivals
        packets: list[PacketInfo | None] = [
            s.next_packet(round_) if live[i] else None for i, s in enumerate(streams)
        ]
        live &= np.array([p is not None for p in packets])
        if not live.any():
            break
        tokens = budget_f if burst is None else min(tokens + budget_f, burst)
        inputs = _round_inputs(streams, packets, live, state, costs, tokens, round_)
        # ---------------------------------------------------------- decision
        start = time.perf_counter()
        selection = policy.decide(inputs)
        decision_s += time.perf_counter() - start
        decided += int(live.sum())
        spent = _check_selection(policy, selection, inputs)
        spent_rounds.append(spent)
        tokens = max(0.0, tokens - spent)
        chosen = np.asarray(selection.chosen)
        feeds = {int(i): state.needed(int(i)) for i in np.flatnonzero(chosen)}
        for i in feeds:
            streams[i].spent += float(inputs.costs[i])
        if selection.prefetch is not None:  # priced before commit moves the state
            stream, count = selection.prefetch
            streams[stream].spent += float(
                np.sum(inputs.dependency_costs[stream][:count])
            )
        prefetched = state.commit(chosen, selection.prefetch)
        if selection.prefetch is not None:
            feeds[selection.prefetch[0]] = prefetched
        # ---------------------------------------------------------- decode
        out, seconds = _decode(streams, feeds, round_, state)
        decode_s += seconds
        # ---------------------------------------------------------- infer, feedback
        inferences += _infer(streams, out, frame_model, filter_)
        selected, feedback = _feedback(streams, out, redundancy)
        start = time.perf_counter()
        policy.feedback(selected, feedback)
        decision_s += time.perf_counter() - start
        log["sizes"].append(inputs.sizes)
        log["intra"].append(inputs.is_intra)
        log["active"].append(inputs.active)
        log["chosen"].append(chosen.copy())
        log["frame"].append(inputs.frame_index)
        round_ += 1
    # -------------------------------------------------------------- drain
    tail: dict[int, list[GatedFrame]] = {}
    for i, s in enumerate(streams):
        start = time.perf_counter()
        frames = s.decoder.drain()
        decode_s += time.perf_counter() - start
        if frames:
            tail[i] = frames
    inferences += _infer(streams, tail, frame_model, filter_)
    return _summarise(
        policy,
        budget_f,
        streams,
        references,
        log,
        spent_rounds,
        decode_s,
        decision_s,
        decided,
        inferences,
        redundancy,
    )


def _check_run_args(
    cameras: Sequence[CameraVideo],
    policy: Policy,
    max_rounds: int | None,
    infer: str,
) -> None:
    if infer not in ("model", "reference"):
        raise ValueError(f"infer is {infer!r}; expected 'model' or 'reference'")
    if infer == "reference" and isinstance(policy, InferenceFilter):
        raise ValueError(
            f"policy {policy.name!r} filters frames by their pixels; expected "
            "infer='model'"
        )
    if len(cameras) == 0:
        raise ValueError("cameras is empty; expected at least one camera")
    if max_rounds is not None:
        check_positive_int("max_rounds", max_rounds)


def _round_inputs(
    streams: Sequence[_Stream],
    packets: Sequence[PacketInfo | None],
    live: BoolArray,
    state: DependencyState,
    costs: DecodeCosts,
    budget: float,
    round_: int,
) -> RoundInputs:
    """The policy's view of a round; the arrivals enter ``state``."""
    arrivals = _arrivals(packets, costs)
    for s, p, own in zip(streams, packets, arrivals.cost, strict=True):
        if p is not None:
            s.decode_all_cost += float(own)
    dep_costs = state.arrive(arrivals)
    dep_costs[~live] = np.inf
    frame_index = np.array([p.frame_index if p else -1 for p in packets], np.int64)
    previous = [
        s.served_before(int(f)) if f >= 0 else DEFAULT_RESULT
        for s, f in zip(streams, frame_index, strict=True)
    ]
    return RoundInputs(
        round=round_,
        sizes=np.array([p.size if p else 0 for p in packets], dtype=np.float64),
        is_intra=np.array([bool(p and p.picture_type == "I") for p in packets]),
        random_access=arrivals.random_access & live,
        frame_index=frame_index,
        active=live.copy(),
        costs=dep_costs,
        own_costs=np.where(live, arrivals.cost, 0.0),
        dependency_costs=DependencyCosts(state),  # built only where read
        previous_results=np.array(previous, dtype=np.int64),
        budget=budget,
    )


def _decode(
    streams: Sequence[_Stream],
    feeds: Mapping[int, list[int]],
    round_: int,
    state: DependencyState,
) -> tuple[dict[int, list[GatedFrame]], float]:
    """Feed each stream its packet ids; the frames out and the seconds it took.

    A stream whose decoder refused a packet decodes nothing more until its next
    random-access point (what follows may need the refused packet).
    """
    out: dict[int, list[GatedFrame]] = {}
    seconds = 0.0
    for i, ids in feeds.items():
        s = streams[i]
        start = time.perf_counter()
        frames = s.decoder.decode(s.by_id[j] for j in ids)
        seconds += time.perf_counter() - start
        for j in ids[: s.decoder.last_fed]:  # a refused packet stops the feed
            s.fed_now(s.by_id[j].frame_index, round_)
        if s.decoder.last_failure is not None:
            logger.warning("camera %d: %s", s.camera.camera_id, s.decoder.last_failure)
            state.break_stream(i)
        if frames:
            out[i] = frames
    return out, seconds


def _feedback(
    streams: Sequence[_Stream],
    out: Mapping[int, list[GatedFrame]],
    redundancy: Redundancy,
) -> tuple[BoolArray, FloatArray]:
    """Streams that output frames, and the largest redundancy among their frames."""
    selected = np.zeros(len(streams), dtype=bool)
    feedback = np.zeros(len(streams))
    for i, frames in out.items():
        s = streams[i]
        selected[i] = True
        feedback[i] = max(
            redundancy(
                s.decoded[f.frame_index],
                previous_result(s.order, s.decoded, f.frame_index),
            )
            for f in frames
        )
    return selected, feedback


def _infer(
    streams: Sequence[_Stream],
    out: Mapping[int, list[GatedFrame]],
    model: FrameModel | None,
    filter_: InferenceFilter | None,
) -> int:
    """Run the model once on the frames in ``out`` and record their results.

    With a filter, a frame it skips gets the stream's last inferred result
    (frames of a stream come out in display order). Without a model, each frame's
    result is its stream's reference result. Returns the frames inferred.
    """
    if model is None:
        for i, frames in out.items():
            s = streams[i]
            for frame in frames:
                s.record(frame.frame_index, int(s.reference[frame.frame_index]))
        return sum(len(frames) for frames in out.values())
    keys: list[tuple[int, int]] = []  # (stream, position) of frames inferred
    images: list[Images] = []
    for i, frames in out.items():
        for k, frame in enumerate(frames):
            if filter_ is None or filter_.should_infer(i, frame.image):
                keys.append((i, k))
                images.append(frame.image)
    size = streams[0].size
    results = (
        _predict(model, resize_frames(np.stack(images), size))
        if images
        else np.zeros(0, dtype=np.int64)
    )
    inferred = {key: int(r) for key, r in zip(keys, results, strict=True)}
    for i, frames in out.items():
        s = streams[i]
        for k, frame in enumerate(frames):
            result = inferred.get((i, k), s.last_inferred)
            s.last_inferred = result
            s.record(frame.frame_index, result)
    return len(images)


def _summarise(
    policy: Policy,
    budget: float,
    streams: Sequence[_Stream],
    references: Sequence[IntArray],
    log: Mapping[str, list[npt.NDArray[np.generic]]],
    spent_rounds: list[float],
    decode_s: float,
    decision_s: float,
    decided: int,
    inferences: int,
    redundancy: Redundancy,
) -> OnlineResult:
    per_stream: list[StreamResult] = []
    served_all: list[IntArray] = []
    correct = frames = 0
    without_all: list[IntArray] = []
    for s, ref in zip(streams, references, strict=True):
        num_frames = max(len(ref), max(s.arrival, default=-1) + 1)
        arrival = np.full(num_frames, -1, dtype=np.int64)
        for f, r in s.arrival.items():
            arrival[f] = r
        served, without = serve(arrival, s.decoded, s.decoded_round)
        served_all.append(served)
        without_all.append(without)
        arrived = np.array(sorted(s.arrival), dtype=np.int64)
        arrived = arrived[arrived < len(ref)]
        hits = int(np.sum(served[arrived] == np.asarray(ref)[arrived]))
        correct += hits
        frames += arrived.size
        per_stream.append(
            StreamResult(
                camera_id=s.camera.camera_id,
                frames=int(arrived.size),
                frames_decoded=len(s.decoded),
                accuracy=hits / arrived.size if arrived.size else 1.0,
                spent=s.spent,
                decode_all_cost=s.decode_all_cost,
            )
        )
    rounds = len(spent_rounds)
    m = len(streams)

    def stacked(key: str, dtype: type[np.generic]) -> npt.NDArray[np.generic]:
        if not log[key]:
            return np.zeros((0, m), dtype=dtype)
        return np.stack(log[key]).astype(dtype)

    frame_log = stacked("frame", np.int64).astype(np.int64)
    labels = np.full((rounds, m), np.nan)
    for i, s in enumerate(streams):
        without = without_all[i]
        for r in range(rounds):
            f = int(frame_log[r, i])
            if f >= 0 and f in s.decoded:
                labels[r, i] = redundancy(s.decoded[f], int(without[f]))
    total_spent = float(sum(spent_rounds))
    decode_all = float(sum(s.decode_all_cost for s in streams))
    return OnlineResult(
        policy=policy.name,
        budget=budget,
        accuracy=correct / frames if frames else 1.0,
        spent=total_spent,
        decode_all_cost=decode_all,
        saved=1.0 - total_spent / decode_all if decode_all else 0.0,
        decode_seconds=decode_s,
        decision_seconds=decision_s,
        decisions_per_second=decided / decision_s if decision_s > 0 else float("inf"),
        frames=frames,
        frames_decoded=sum(len(s.decoded) for s in streams),
        inferences=inferences,
        packets_fed=sum(s.decoder.packets_fed for s in streams),
        dropped_frames=sum(s.decoder.dropped_frames for s in streams),
        decode_failures=sum(s.decoder.failures for s in streams),
        unreadable_packets=sum(s.unreadable for s in streams),
        rounds=rounds,
        spent_per_round=np.array(spent_rounds, dtype=np.float64),
        per_stream=tuple(per_stream),
        served=tuple(served_all),
        log=RoundLog(
            sizes=stacked("sizes", np.float64).astype(np.float64),
            is_intra=stacked("intra", np.bool_).astype(np.bool_),
            active=stacked("active", np.bool_).astype(np.bool_),
            chosen=stacked("chosen", np.bool_).astype(np.bool_),
            frame_index=frame_log,
            labels=labels,
        ),
    )
