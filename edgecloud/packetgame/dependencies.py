"""Decode dependencies of live video streams and the cost of decoding a packet now.

Thesis Fig. 2.6: what decoding the packet that just arrived costs depends on what
was already decoded. A packet needs the last random-access point (an IDR / CRA /
BLA picture, a VP9 key frame) and every *reference* packet since it, in decode
order; non-reference packets (H.264 ``nal_ref_idc == 0``, H.265 sub-layer
non-reference types, VP9 ``refresh_frame_flags == 0``) are never needed by others
and can be skipped freely. The cost of decoding packet k is the calibrated cost
of every needed packet not decoded yet, its own included.

Open GOPs (x265's default): the RASL pictures that follow a CRA picture in decode
order reference the GOP *before* it, so they also need that GOP's undecoded
reference packets, and those must reach the decoder before the CRA. Once the CRA
was decoded without them, the RASL pictures of that CRA cannot be decoded
correctly any more: their cost is infinite (a fresh decoder would drop them, one
that saw earlier pictures would output them with wrong references). The same
holds for every packet of a stream before its first random-access point.

:class:`DependencyState` keeps this for ``m`` streams at once as arrays (one packet
per stream per round arrives), so the per-round cost of all streams is a few numpy
operations; the undecoded needed packets of each stream are kept in order for the
decoder (and for the optimizer's prefetch of the next packet's dependencies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class DecodeCosts:
    """Calibrated cost of decoding one picture of each type (any unit, e.g. ms).

    Measured per machine by the PacketGame benchmark; the optimizer's budget uses
    the same unit.
    """

    intra: float
    predicted: float
    bidirectional: float

    def __post_init__(self) -> None:
        for name in ("intra", "predicted", "bidirectional"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(
                    f"decode cost '{name}' is {value!r}; expected a finite number > 0"
                )

    def of(self, picture_types: Sequence[str]) -> FloatArray:
        """The cost of each picture type (``"I"``, ``"P"``, ``"B"``), shape ``(n,)``."""
        table = {"I": self.intra, "P": self.predicted, "B": self.bidirectional}
        try:
            return np.array([table[t] for t in picture_types], dtype=np.float64)
        except KeyError as err:
            raise ValueError(
                f"picture type {err.args[0]!r}; expected one of 'I', 'P', 'B'"
            ) from None


@dataclass(frozen=True)
class Arrivals:
    """One round's arriving packets, one per stream (each array shape ``(m,)``).

    ``cost``: the packet's own calibrated decode cost; ``random_access``: a decoder
    can start at it (IDR / CRA / BLA, VP9 key frame); ``reference``: later packets
    may need it; ``rasl``: an H.265 leading picture that references the GOP before
    the last random-access point; ``leading``: any leading picture (RASL or RADL);
    ``ids``: the caller's id of each packet (e.g. its decode index), kept in the
    dependency lists; ``broken``: the packet cannot be decoded (its headers do not
    parse): it is never chosen and its stream decodes nothing more until its next
    random-access point (``None``: none broken).
    """

    cost: FloatArray
    random_access: BoolArray
    reference: BoolArray
    rasl: BoolArray
    leading: BoolArray
    ids: npt.NDArray[np.int64]
    broken: BoolArray | None = None

    def __post_init__(self) -> None:
        m = self.cost.shape[0]
        if self.broken is None:
            object.__setattr__(self, "broken", np.zeros(m, dtype=bool))
        for name in ("random_access", "reference", "rasl", "leading", "ids", "broken"):
            shape = getattr(self, name).shape
            if shape != (m,):
                raise ValueError(
                    f"arrivals '{name}' has shape {shape}; expected ({m},) like 'cost'"
                )
        if not np.all(np.isfinite(self.cost) & (self.cost > 0)):
            raise ValueError("arrivals 'cost' holds a value <= 0 or not finite")

    @property
    def broken_mask(self) -> BoolArray:
        """``broken`` as an array (``__post_init__`` fills in ``None``)."""
        assert self.broken is not None
        return self.broken


class DependencyState:
    """What each of ``m`` live streams still needs decoded, as arrays.

    Each round: :meth:`arrive` with the arriving packets returns the cost of
    decoding each one now (``inf`` where it cannot be decoded correctly any more);
    :meth:`needed` lists the packet ids a chosen stream must feed its decoder, in
    decode order; :meth:`commit` records which were decoded (and any prefetched
    dependencies) and moves the state to the next round.

    The undecoded needed packets of every stream live in one ``(m, capacity)``
    ring of (id, cost): the current GOP's pending packets are the range
    ``[pending_head, pending_tail)``, the previous GOP's (for RASL pictures)
    ``[previous_head, previous_tail)`` just before it; a round updates every
    stream with a few vectorised operations (no Python loop over streams). The
    ring grows when a GOP outgrows it.
    """

    def __init__(self, num_streams: int, capacity: int = 64) -> None:
        if num_streams < 1:
            raise ValueError(f"num_streams is {num_streams}; expected >= 1")
        if capacity < 1:
            raise ValueError(f"capacity is {capacity}; expected >= 1")
        m = num_streams
        self.num_streams = m
        self._ids = np.zeros((m, capacity), dtype=np.int64)
        self._costs_ring = np.zeros((m, capacity))
        # absolute positions (the ring index is position % capacity)
        self._pending_head = np.zeros(m, dtype=np.int64)
        self._pending_tail = np.zeros(m, dtype=np.int64)
        self._previous_head = np.zeros(m, dtype=np.int64)
        self._previous_tail = np.zeros(m, dtype=np.int64)
        self._pending_cost = np.zeros(m)
        self._previous_cost = np.zeros(m)
        # the last random-access point was decoded while the previous GOP's
        # packets were pending: its RASL pictures can no longer be decoded
        self._rasl_broken = np.zeros(m, dtype=bool)
        # a random-access point has arrived (packets before it cannot be decoded)
        self._started = np.zeros(m, dtype=bool)
        # broken (see break_stream): the next random-access point starts afresh,
        # so its RASL pictures cannot be decoded
        self._restart = np.zeros(m, dtype=bool)
        self._arrivals: Arrivals | None = None
        self._costs: FloatArray | None = None

    # ------------------------------------------------------------------ a round
    def arrive(self, arrivals: Arrivals) -> FloatArray:
        """The cost of decoding each arriving packet now, shape ``(m,)``."""
        if arrivals.cost.shape != (self.num_streams,):
            raise ValueError(
                f"arrivals for {arrivals.cost.shape[0]} streams; expected "
                f"{self.num_streams}"
            )
        if self._arrivals is not None:
            raise RuntimeError("arrive() called twice without commit()")
        a = arrivals
        started = self._started | a.random_access
        # a random-access point needs only itself; others this GOP's pending
        # packets; RASL pictures also the previous GOP's
        cost = a.cost + np.where(a.random_access, 0.0, self._pending_cost)
        cost = cost + np.where(a.rasl, self._previous_cost, 0.0)
        undecodable = ~started | (a.rasl & self._rasl_broken) | a.broken_mask
        cost[undecodable] = np.inf
        self._arrivals, self._costs = a, cost
        return cost

    def needed(self, stream: int) -> list[int]:
        """Ids of the packets ``stream`` must decode, in order, to decode its arrival.

        Its arrival last; empty if it cannot be decoded (infinite cost).
        """
        a, cost = self._current()
        if not np.isfinite(cost[stream]):
            return []
        ids = [int(i) for i, _ in self._dependencies(stream)]
        return [*ids, int(a.ids[stream])]

    def dependency_costs(self, stream: int) -> FloatArray:
        """Costs of the undecoded packets ``stream``'s arrival needs, in decode order.

        Without its own cost: what a prefetch of its dependencies could decode.
        """
        _, cost = self._current()
        if not np.isfinite(cost[stream]):
            return np.zeros(0)
        return np.array([c for _, c in self._dependencies(stream)], dtype=np.float64)

    def commit(
        self, decoded: BoolArray, prefetch: tuple[int, int] | None = None
    ) -> list[int]:
        """Record the round's decisions; returns the prefetched packet ids.

        ``decoded[i]``: stream i's arrival was decoded with everything it needed.
        ``prefetch = (stream, k)``: the first ``k`` of that stream's dependencies
        (:meth:`dependency_costs` order) were decoded too, without its arrival.
        """
        a, cost = self._current()
        m = self.num_streams
        if decoded.shape != (m,):
            raise ValueError(f"decoded has shape {decoded.shape}; expected ({m},)")
        if np.any(decoded & ~np.isfinite(cost)):
            bad = int(np.flatnonzero(decoded & ~np.isfinite(cost))[0])
            raise ValueError(
                f"stream {bad}'s packet cannot be decoded correctly (infinite cost); "
                "it must not be chosen"
            )
        prefetched = self._prefetch(prefetch, decoded) if prefetch else []
        self._started |= a.random_access
        self._advance(a, decoded)
        self._break(a.broken_mask)
        self._arrivals = self._costs = None
        return prefetched

    def break_stream(self, stream: int) -> None:
        """``stream`` can decode nothing more until its next random-access point.

        For a decoder that failed on a packet: the packets after it may need it,
        so none of them is decodable; the next random-access point starts the
        stream again (its RASL pictures, which need the GOP before, excepted).
        Call it between :meth:`commit` and the next :meth:`arrive`.
        """
        if self._arrivals is not None:
            raise RuntimeError("break_stream() called between arrive() and commit()")
        if not 0 <= stream < self.num_streams:
            raise ValueError(
                f"stream is {stream}; expected 0 <= stream < {self.num_streams}"
            )
        mask = np.zeros(self.num_streams, dtype=bool)
        mask[stream] = True
        self._break(mask)

    def _break(self, mask: BoolArray) -> None:
        self._started[mask] = False
        self._restart[mask] = True
        self._pending_head[mask] = self._pending_tail[mask]
        self._pending_cost[mask] = 0.0
        self._previous_head[mask] = self._previous_tail[mask]
        self._previous_cost[mask] = 0.0

    # ------------------------------------------------------------------ internals
    def _current(self) -> tuple[Arrivals, FloatArray]:
        if self._arrivals is None or self._costs is None:
            raise RuntimeError("call arrive() first")
        return self._arrivals, self._costs

    def _range(self, stream: int, head: int, tail: int) -> list[tuple[int, float]]:
        slots = np.arange(head, tail) % self._ids.shape[1]
        ids, costs = self._ids[stream, slots], self._costs_ring[stream, slots]
        return [(int(i), float(c)) for i, c in zip(ids, costs, strict=True)]

    def _dependencies(self, stream: int) -> list[tuple[int, float]]:
        """(id, cost) of the undecoded packets the current arrival needs, in order."""
        a, _ = self._current()
        deps: list[tuple[int, float]] = []
        if bool(a.rasl[stream]):
            head, tail = self._previous_head[stream], self._previous_tail[stream]
            deps += self._range(stream, int(head), int(tail))
        if not bool(a.random_access[stream]):
            head, tail = self._pending_head[stream], self._pending_tail[stream]
            deps += self._range(stream, int(head), int(tail))
        return deps

    def _prefetch(self, prefetch: tuple[int, int], decoded: BoolArray) -> list[int]:
        stream, count = prefetch
        a, _ = self._current()
        if not 0 <= stream < self.num_streams or bool(decoded[stream]):
            raise ValueError(
                f"prefetch stream {stream}: expected a stream not decoded this round"
            )
        deps = self._dependencies(stream)
        if not 0 <= count <= len(deps):
            raise ValueError(
                f"prefetch of {count} dependencies of stream {stream}; expected "
                f"0..{len(deps)}"
            )
        ranges = []
        if bool(a.rasl[stream]):
            ranges.append(
                (self._previous_head, self._previous_tail, self._previous_cost)
            )
        if not bool(a.random_access[stream]):
            ranges.append((self._pending_head, self._pending_tail, self._pending_cost))
        left = count
        for head, tail, total in ranges:
            take = min(left, int(tail[stream] - head[stream]))
            for _, c in self._range(
                stream, int(head[stream]), int(head[stream]) + take
            ):
                total[stream] -= c
            head[stream] += take
            left -= take
            if head[stream] == tail[stream]:
                total[stream] = 0.0  # no float residue
        return [i for i, _ in deps[:count]]

    def _append(self, streams: npt.NDArray[np.intp], a: Arrivals) -> None:
        """Add each of ``streams``' arrivals to the end of its pending range."""
        if streams.size == 0:
            return
        oldest = self._oldest()[streams]
        if np.any(self._pending_tail[streams] + 1 - oldest > self._ids.shape[1]):
            self._grow()
        slots = self._pending_tail[streams] % self._ids.shape[1]
        self._ids[streams, slots] = a.ids[streams]
        self._costs_ring[streams, slots] = a.cost[streams]
        self._pending_tail[streams] += 1
        self._pending_cost[streams] += a.cost[streams]

    def _oldest(self) -> npt.NDArray[np.int64]:
        """Each stream's first live ring position (its previous GOP's, if any)."""
        has_previous = self._previous_tail > self._previous_head
        return np.where(has_previous, self._previous_head, self._pending_head)

    def _grow(self) -> None:
        """Double the ring, keeping every stream's live entries at their positions."""
        old = self._ids.shape[1]
        new = old * 2
        ids = np.zeros((self.num_streams, new), dtype=np.int64)
        costs = np.zeros((self.num_streams, new))
        start = self._oldest()
        for i in range(self.num_streams):  # rare: only when a GOP outgrows it
            positions = np.arange(start[i], self._pending_tail[i])
            ids[i, positions % new] = self._ids[i, positions % old]
            costs[i, positions % new] = self._costs_ring[i, positions % old]
        self._ids, self._costs_ring = ids, costs

    def _advance(self, a: Arrivals, decoded: BoolArray) -> None:
        """Every stream's state after its arrival was decoded or skipped."""
        rap = a.random_access
        has_previous = self._previous_tail > self._previous_head
        has_pending = self._pending_tail > self._pending_head
        # random-access points: the GOP that ends here is what its RASL pictures
        # may need; the new GOP starts with the point itself if it was skipped
        self._previous_head = np.where(rap, self._pending_head, self._previous_head)
        self._previous_tail = np.where(rap, self._pending_tail, self._previous_tail)
        self._previous_cost = np.where(rap, self._pending_cost, self._previous_cost)
        self._rasl_broken = np.where(
            rap, (decoded & has_pending) | self._restart, self._rasl_broken
        )
        self._restart &= ~rap
        # other packets
        other = ~rap
        trailing = other & ~a.leading  # no RASL picture of this GOP follows
        clear_previous = trailing | (other & decoded & a.rasl)
        self._previous_head = np.where(
            clear_previous, self._previous_tail, self._previous_head
        )
        self._previous_cost[clear_previous] = 0.0
        self._rasl_broken &= ~trailing
        # a decode that feeds the random-access point before the previous GOP's
        # pending packets loses its RASL pictures
        self._rasl_broken |= (
            other & decoded & ~a.rasl & has_pending & has_previous & ~trailing
        )
        # everything pending is decoded with a decoded packet
        self._pending_head = np.where(
            decoded | rap, self._pending_tail, self._pending_head
        )
        self._pending_cost[decoded | rap] = 0.0
        self._append(
            np.flatnonzero((rap & ~decoded) | (other & ~decoded & a.reference)), a
        )


class DependencyCosts(Sequence[FloatArray]):
    """Each stream's dependency costs, built only for the streams asked for.

    What :func:`~edgecloud.packetgame.optimizer.greedy_select` takes: the optimizer
    reads one stream's list (the first packet that did not fit), so building all
    ``m`` lists every round would be wasted work.
    """

    def __init__(self, state: DependencyState) -> None:
        self._state = state

    def __len__(self) -> int:
        return self._state.num_streams

    @overload
    def __getitem__(self, index: int) -> FloatArray: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[FloatArray]: ...

    def __getitem__(self, index: int | slice) -> FloatArray | Sequence[FloatArray]:
        if isinstance(index, slice):
            return [self._state.dependency_costs(i) for i in range(len(self))[index]]
        return self._state.dependency_costs(index)
