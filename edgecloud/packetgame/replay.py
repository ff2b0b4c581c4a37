"""Many live streams from a few cameras: real packet metadata replayed with offsets.

The decision-cost benchmark needs a thousand concurrent streams; the testbed has
eight cameras. Each replayed stream is one camera's packet metadata (sizes,
picture types, reference and random-access flags, as parsed from the bitstream)
started at its own offset and wrapped around, so streams are out of phase. No
decoding: the gate's decisions depend on metadata only.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from edgecloud.data.testbed.readers import CameraVideo
from edgecloud.packetgame.decision import Mode, PacketGate
from edgecloud.packetgame.dependencies import (
    Arrivals,
    DecodeCosts,
    DependencyCosts,
    DependencyState,
)
from edgecloud.packetgame.predictor import ContextualPredictor

PICTURE_CODES = {"I": 0, "P": 1, "B": 2}


@dataclass(frozen=True)
class StreamMetadata:
    """Packet metadata of streams over rounds, each array ``(rounds, m)``."""

    sizes: npt.NDArray[np.int64]
    picture: npt.NDArray[np.int8]  # PICTURE_CODES
    random_access: npt.NDArray[np.bool_]
    reference: npt.NDArray[np.bool_]
    rasl: npt.NDArray[np.bool_]
    leading: npt.NDArray[np.bool_]

    @property
    def rounds(self) -> int:
        """Rounds replayed."""
        return int(self.sizes.shape[0])

    @property
    def num_streams(self) -> int:
        """Concurrent streams ``m``."""
        return int(self.sizes.shape[1])

    def arrivals(self, t: int, costs: DecodeCosts) -> Arrivals:
        """Round ``t``'s packets as :class:`Arrivals` (ids = the round)."""
        table = np.array([costs.intra, costs.predicted, costs.bidirectional])
        return Arrivals(
            cost=table[self.picture[t]],
            random_access=self.random_access[t],
            reference=self.reference[t],
            rasl=self.rasl[t],
            leading=self.leading[t],
            ids=np.full(self.num_streams, t, dtype=np.int64),
        )


def camera_metadata(camera: CameraVideo) -> StreamMetadata:
    """One camera's packets in decode order, as a one-stream :class:`StreamMetadata`."""
    packets = [p for p, _ in camera.packets()]
    if not packets:
        raise ValueError(f"camera {camera.camera_id} ({camera.path}) has no packets")

    return StreamMetadata(
        sizes=np.array([[p.size] for p in packets], dtype=np.int64),
        picture=np.array(
            [[PICTURE_CODES[p.picture_type]] for p in packets], dtype=np.int8
        ),
        random_access=np.array([[p.random_access] for p in packets], dtype=bool),
        reference=np.array([[p.reference] for p in packets], dtype=bool),
        rasl=np.array([[p.leading == "RASL"] for p in packets], dtype=bool),
        leading=np.array([[p.leading != ""] for p in packets], dtype=bool),
    )


def replay(
    cameras: Sequence[StreamMetadata], num_streams: int, rounds: int, seed: int = 0
) -> StreamMetadata:
    """``num_streams`` streams over ``rounds``: camera ``j % C`` from a random offset.

    A stream wraps around to its camera's first packet after the last one; it
    starts wherever its offset falls (possibly mid-GOP: until its first
    random-access point its packets cannot be decoded).
    """
    if not cameras:
        raise ValueError("no cameras to replay; expected at least one")
    if num_streams < 1 or rounds < 1:
        raise ValueError(
            f"num_streams={num_streams}, rounds={rounds}; expected both >= 1"
        )
    rng = np.random.default_rng(seed)
    fields: dict[str, list[npt.NDArray[np.generic]]] = {
        name: [] for name in StreamMetadata.__dataclass_fields__
    }
    for j in range(num_streams):
        source = cameras[j % len(cameras)]
        n = source.rounds
        index = (int(rng.integers(0, n)) + np.arange(rounds)) % n
        for name in fields:
            fields[name].append(getattr(source, name)[index, 0])
    return StreamMetadata(
        **{name: np.stack(cols, axis=1) for name, cols in fields.items()}
    )


def replay_decision_cost(
    metadata: StreamMetadata,
    costs: DecodeCosts,
    *,
    window: int = 5,
    budget_fraction: float = 0.1,
    mode: Mode = "packetgame",
    predictor: ContextualPredictor | None = None,
    warmup: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """Seconds per stream per round of the whole decision on replayed streams.

    Each round: the dependency state prices every arriving packet, the gate
    (estimator, predictor, optimizer) chooses under ``budget_fraction`` of the
    round's total dependency-aware cost of the decodable packets, and the state
    records the decisions. Feedback is random (its values do not change the cost).
    Medians over the rounds after ``warmup``; ``dependencies-s`` is the
    dependency bookkeeping, the other parts as in
    :func:`~edgecloud.packetgame.decision.decision_cost`.
    """
    m, rounds = metadata.num_streams, metadata.rounds
    if rounds <= warmup:
        raise ValueError(f"rounds={rounds}; expected more than warmup={warmup}")
    rng = np.random.default_rng(seed)
    if predictor is None and mode != "temporal":
        predictor = ContextualPredictor(window, seed=seed)
    gate = PacketGate(m, window, horizon=rounds, predictor=predictor, mode=mode)
    state = DependencyState(m)
    lazy = DependencyCosts(state)
    parts: dict[str, list[float]] = {
        key: []
        for key in ("total", "dependencies", "predictor", "optimizer", "estimator")
    }
    with torch.no_grad():
        for t in range(rounds):
            arrivals = metadata.arrivals(t, costs)
            start = time.perf_counter()
            price = state.arrive(arrivals)
            decodable = np.isfinite(price)
            # undecodable packets are priced above any budget: never chosen
            finite = np.where(decodable, price, 0.0)
            budget = budget_fraction * float(finite.sum())
            priced = np.where(decodable, price, budget + finite.max() + 1.0)
            priced_at = time.perf_counter()
            clock: list[float] = []
            selection = gate._decide(
                metadata.sizes[t], metadata.picture[t] == 0, priced, lazy, budget, clock
            )
            stamped = time.perf_counter()
            gate.feedback(selection.chosen, rng.random(m) < 0.3)
            state.commit(selection.chosen & decodable, selection.prefetch)
            end = time.perf_counter()
            if t < warmup:
                continue
            s0, s1, s2, s3, s4 = clock
            parts["total"].append(end - start)
            parts["dependencies"].append(priced_at - start + end - stamped)
            parts["optimizer"].append(s1 - s0 + s4 - s3)
            parts["estimator"].append(s2 - s1)
            parts["predictor"].append(s3 - s2)
    result = {f"{k}-s": statistics.median(v) / m for k, v in parts.items()}
    result |= {"num-streams": float(m), "window": float(window)}
    return result
