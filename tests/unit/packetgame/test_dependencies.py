"""Decode dependencies: the incremental state equals the definition, open GOPs too."""

from __future__ import annotations

import numpy as np
import pytest

from edgecloud.packetgame.dependencies import Arrivals, DecodeCosts, DependencyState

COSTS = DecodeCosts(intra=3.0, predicted=1.0, bidirectional=0.5)


def _arrive(kind: str, ident: int, cost: float | None = None) -> tuple[str, int, float]:
    return (
        kind,
        ident,
        cost if cost is not None else {"I": 3.0, "C": 3.0}.get(kind, 1.0),
    )


def _arrivals(packets: list[tuple[str, int, float]]) -> Arrivals:
    """Kinds: I (IDR), C (CRA), P (reference), b (non-reference), R (RASL), D (RADL)."""
    kinds = [k for k, _, _ in packets]
    return Arrivals(
        cost=np.array([c for _, _, c in packets]),
        random_access=np.array([k in "IC" for k in kinds]),
        reference=np.array([k in "ICP" for k in kinds]),
        rasl=np.array([k == "R" for k in kinds]),
        leading=np.array([k in "RD" for k in kinds]),
        ids=np.array([i for _, i, _ in packets], dtype=np.int64),
    )


def _one_stream(state: DependencyState, kind: str, ident: int) -> float:
    return float(state.arrive(_arrivals([_arrive(kind, ident)]))[0])


def test_a_predicted_packet_needs_the_key_frame_and_every_skipped_reference() -> None:
    # Prepare: I P P P, one stream, all skipped until the third P
    state = DependencyState(1)
    costs = []

    # Execute
    for ident, kind in enumerate("IPP"):
        costs.append(_one_stream(state, kind, ident))
        state.commit(np.array([False]))
    costs.append(_one_stream(state, "P", 3))
    needed = state.needed(0)
    state.commit(np.array([True]))
    after = _one_stream(state, "P", 4)

    # Assert
    assert costs == [3.0, 4.0, 5.0, 6.0]
    assert needed == [0, 1, 2, 3]
    assert after == 1.0  # everything before it is decoded now


def test_non_reference_packets_are_never_needed() -> None:
    # Prepare
    state = DependencyState(1)
    for ident, kind in enumerate("Ibb"):
        _one_stream(state, kind, ident)
        state.commit(np.array([ident == 0]))

    # Execute
    cost = _one_stream(state, "P", 3)

    # Assert
    assert cost == 1.0 and state.needed(0) == [3]


def test_packets_before_the_first_random_access_point_cannot_be_decoded() -> None:
    # Prepare
    state = DependencyState(1)

    # Execute
    cost = _one_stream(state, "P", 0)

    # Assert
    assert cost == np.inf and state.needed(0) == []
    with pytest.raises(ValueError, match="infinite cost"):
        state.commit(np.array([True]))


def test_rasl_pictures_need_the_previous_gop_fed_before_the_cra() -> None:
    # Prepare: GOP 1 skipped after its IDR; then a CRA and its RASL picture
    state = DependencyState(1)
    for ident, kind in enumerate("IPP"):
        _one_stream(state, kind, ident)
        state.commit(np.array([ident == 0]))
    _one_stream(state, "C", 3)
    state.commit(np.array([False]))

    # Execute
    cost = _one_stream(state, "R", 4)
    needed = state.needed(0)
    state.commit(np.array([True]))

    # Assert: P1, P2 (previous GOP), the CRA, the RASL picture, in decode order
    assert needed == [1, 2, 3, 4] and cost == 1.0 + 1.0 + 3.0 + 1.0


def test_rasl_pictures_are_lost_once_the_cra_was_decoded_without_the_old_gop() -> None:
    # Prepare
    state = DependencyState(1)
    for ident, kind in enumerate("IP"):
        _one_stream(state, kind, ident)
        state.commit(np.array([ident == 0]))
    _one_stream(state, "C", 2)
    state.commit(np.array([True]))  # the CRA alone: P1 never reaches the decoder

    # Execute
    rasl = _one_stream(state, "R", 3)
    state.commit(np.array([False]))
    radl = _one_stream(state, "D", 4)

    # Assert: the RASL picture cannot be decoded correctly; a RADL one can
    assert rasl == np.inf and radl == 1.0


def test_prefetch_decodes_a_prefix_of_the_dependencies() -> None:
    # Prepare
    state = DependencyState(1)
    for ident, kind in enumerate("IPP"):
        _one_stream(state, kind, ident)
        state.commit(np.array([False]))
    _one_stream(state, "P", 3)
    deps = state.dependency_costs(0)

    # Execute
    prefetched = state.commit(np.array([False]), prefetch=(0, 2))
    cost = _one_stream(state, "P", 4)

    # Assert: I0 and P1 decoded; P2, P3 and P4 remain
    assert list(deps) == [3.0, 1.0, 1.0] and prefetched == [0, 1]
    assert state.needed(0) == [2, 3, 4] and cost == 3.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # a stream whose arrays disagree in length cannot be matched up
        ("reference", np.array([True, False]), "shape"),
        # a free or negative decode makes the budget meaningless
        ("cost", np.array([0.0]), "<= 0"),
        ("cost", np.array([np.nan]), "not finite"),
    ],
)
def test_bad_arrivals_are_refused(field: str, value: object, message: str) -> None:
    # Prepare
    fields = {
        "cost": np.array([1.0]),
        "random_access": np.array([True]),
        "reference": np.array([True]),
        "rasl": np.array([False]),
        "leading": np.array([False]),
        "ids": np.array([0]),
    }
    fields[field] = value

    # Execute / Assert
    with pytest.raises(ValueError, match=message):
        Arrivals(**fields)  # type: ignore[arg-type]


def test_decode_costs_must_be_positive_and_types_known() -> None:
    with pytest.raises(ValueError, match="'predicted' is 0"):
        DecodeCosts(intra=1.0, predicted=0.0, bidirectional=1.0)
    with pytest.raises(ValueError, match="picture type 'X'"):
        COSTS.of(["I", "X"])
    assert list(COSTS.of(["I", "P", "B"])) == [3.0, 1.0, 0.5]


def _random_stream(rng: np.random.Generator, length: int) -> list[str]:
    """A plausible open-GOP packet sequence in decode order."""
    kinds = ["P", "b"] if rng.random() < 0.3 else []  # may start mid-GOP
    kinds.append("I")
    while len(kinds) < length:
        gop = int(rng.integers(2, 8))
        kinds += list(rng.choice(["P", "b"], size=gop))
        kinds.append(str(rng.choice(["I", "C"])))
        if kinds[-1] == "C":
            kinds += list(rng.choice(["R", "D"], size=int(rng.integers(0, 3))))
    return kinds[:length]


def _reference_model(kinds: list[str], decisions: list[bool]) -> list[float]:
    """Costs by the definition: undecoded needed packets, fed in decode order."""
    decoded: set[int] = set()
    last_fed, costs = -1, []
    for k, kind in enumerate(kinds):
        raps = [j for j in range(k + 1) if kinds[j] in "IC"]
        if not raps:
            costs.append(np.inf)
            continue
        start = raps[-1]
        if kind == "R":
            earlier = [j for j in raps if j < start]
            start = earlier[-1] if earlier else start
        needs = [
            j for j in range(start, k) if kinds[j] in "ICP" and j not in decoded
        ] + [k]
        if kind in "IC":
            needs = [k]
        feedable = all(j > last_fed for j in needs) and (
            kind != "R" or start < raps[-1]
        )
        cost = sum(3.0 if kinds[j] in "IC" else 1.0 for j in needs)
        costs.append(cost if feedable else np.inf)
        if decisions[k] and feedable:
            decoded.update(needs)
            last_fed = k
    return costs


@pytest.mark.parametrize("capacity", [2, 64])  # 2: the ring grows on the way
def test_incremental_costs_equal_the_definition_on_random_streams(
    capacity: int,
) -> None:
    # Prepare: 200 random streams of 40 packets, random decisions
    rng = np.random.default_rng(0)
    streams = [_random_stream(rng, 40) for _ in range(200)]
    decisions = [list(rng.random(40) < 0.3) for _ in streams]
    state = DependencyState(len(streams), capacity=capacity)
    expected = [_reference_model(s, d) for s, d in zip(streams, decisions, strict=True)]

    # Execute / Assert: round by round, every stream's cost and needed packets
    for t in range(40):
        costs = state.arrive(_arrivals([_arrive(s[t], t) for s in streams]))
        assert list(costs) == [e[t] for e in expected], f"round {t}"
        for i in range(0, len(streams), 17):
            if np.isfinite(costs[i]):
                needed = state.needed(i)
                assert needed[-1] == t and needed == sorted(set(needed))
        chosen = np.array([d[t] for d in decisions]) & np.isfinite(costs)
        state.commit(chosen)


def test_a_broken_stream_waits_for_its_next_random_access_point() -> None:
    # Prepare: I P decoded; the decoder then refused P1's successor
    state = DependencyState(1)
    for ident, kind in enumerate("IP"):
        _one_stream(state, kind, ident)
        state.commit(np.array([True]))

    # Execute
    state.break_stream(0)
    after = [_one_stream(state, "P", 2)]
    state.commit(np.array([False]))
    after.append(_one_stream(state, "C", 3))
    state.commit(np.array([True]))
    rasl = _one_stream(state, "R", 4)  # needs the GOP before the break
    state.commit(np.array([False]))
    radl = _one_stream(state, "D", 5)

    # Assert: nothing until the CRA, which starts afresh (its RASL picture lost)
    assert after == [np.inf, 3.0]
    assert rasl == np.inf and radl == 1.0


def test_an_unreadable_packet_breaks_its_stream_until_a_key_frame() -> None:
    # Prepare: stream 0 receives a packet whose headers did not parse
    state = DependencyState(2)
    state.arrive(_arrivals([_arrive("I", 0), _arrive("I", 10)]))
    state.commit(np.array([True, True]))
    broken = _arrivals([_arrive("P", 1), _arrive("P", 11)])
    broken = Arrivals(**{**broken.__dict__, "broken": np.array([True, False])})

    # Execute
    costs = state.arrive(broken)
    state.commit(np.array([False, True]))
    later = state.arrive(_arrivals([_arrive("P", 2), _arrive("P", 12)]))
    state.commit(np.array([False, False]))
    key = state.arrive(_arrivals([_arrive("I", 3), _arrive("P", 13)]))

    # Assert: never chosen, and nothing after it decodes until the I picture;
    # the other stream is unaffected
    assert costs.tolist() == [np.inf, 1.0]
    assert later.tolist() == [np.inf, 1.0]
    assert key.tolist() == [3.0, 2.0]


def test_break_stream_refuses_a_bad_stream_or_a_round_in_progress() -> None:
    state = DependencyState(1)
    with pytest.raises(ValueError, match="stream is 3; expected 0 <= stream < 1"):
        state.break_stream(3)
    state.arrive(_arrivals([_arrive("I", 0)]))
    with pytest.raises(RuntimeError, match="between arrive"):
        state.break_stream(0)
