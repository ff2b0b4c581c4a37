"""Gated decoding: the chosen packets and their dependencies; frames bit-identical."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from edgecloud.data.testbed import generate_testbed, preset
from edgecloud.data.testbed.readers import PacketInfo
from edgecloud.packetgame.dependencies import Arrivals, DecodeCosts, DependencyState
from edgecloud.packetgame.gated_decoder import GatedDecoder, StreamCodec

COSTS = DecodeCosts(intra=4.0, predicted=1.0, bidirectional=0.7)

SETTINGS = [
    # (codec, gop, b_frames, seconds): every setting the dependency model must handle
    ("h264", 10, 0, 6.0),  # closed GOPs, all references
    ("h264", 12, 3, 6.0),  # B-pyramid: reference and non-reference B pictures
    ("h264", 300, 2, 31.0),  # one long GOP
    ("h265", 10, 0, 6.0),
    ("h265", 10, 2, 6.0),  # open GOPs: RASL pictures before some CRAs
    ("vp9", 10, 0, 6.0),
    ("vp9", 300, 0, 31.0),
]


def _full_decode(path: Path, fps: int) -> tuple[StreamCodec, dict[int, np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = StreamCodec.of(stream)
        tb = stream.time_base
        assert tb is not None
        frames = {
            round(float(f.pts * tb) * fps): f.to_ndarray(format="rgb24")
            for f in container.decode(stream)
        }
    return codec, frames


def _arrivals(packet: PacketInfo) -> Arrivals:
    return Arrivals(
        cost=COSTS.of([packet.picture_type]),
        random_access=np.array([packet.random_access]),
        reference=np.array([packet.reference]),
        rasl=np.array([packet.leading == "RASL"]),
        leading=np.array([packet.leading != ""]),
        ids=np.array([packet.decode_index], dtype=np.int64),
    )


@pytest.mark.parametrize(("codec", "gop", "b_frames", "seconds"), SETTINGS)
def test_gated_frames_equal_a_full_decode(
    tmp_path: Path, codec: str, gop: int, b_frames: int, seconds: float
) -> None:
    # Prepare: one tiny camera; a full decode as the truth
    cfg = preset(
        "tiny",
        num_cameras=1,
        held_out_cameras=0,
        duration_s=seconds,
        codec=codec,
        gop=gop,
        b_frames=b_frames,
    )
    testbed, _ = generate_testbed(cfg, tmp_path, workers=1, progress=False)
    cam = testbed.camera(0)
    stream_codec, truth = _full_decode(cam.path, cfg.fps)
    packets = [p for p, _ in cam.packets()]
    by_id = {p.decode_index: p for p in packets}
    state = DependencyState(1)
    decoder = GatedDecoder(stream_codec)
    rng = np.random.default_rng(gop + b_frames)
    chosen: list[int] = []
    out = []

    # Execute: each packet arrives; a random quarter is chosen (when decodable)
    for packet in packets:
        cost = state.arrive(_arrivals(packet))
        take = bool(rng.random() < 0.25 and np.isfinite(cost[0]))
        if take:
            chosen.append(packet.frame_index)
            out += decoder.decode(by_id[i] for i in state.needed(0))
        state.commit(np.array([take]))
    out += decoder.drain()

    # Assert: every frame handed out is the true one, each chosen frame came out
    assert decoder.dropped_frames == 0
    assert {f.frame_index for f in out} >= set(chosen)
    for frame in out:
        np.testing.assert_array_equal(frame.image, truth[frame.frame_index])
    assert decoder.packets_fed < len(packets)  # the gate saved decoding


def test_a_packet_out_of_decode_order_is_refused(tmp_path: Path) -> None:
    # Prepare
    cfg = preset("tiny", num_cameras=1, held_out_cameras=0, duration_s=2.0)
    testbed, _ = generate_testbed(cfg, tmp_path, workers=1, progress=False)
    cam = testbed.camera(0)
    codec, _ = _full_decode(cam.path, cfg.fps)
    packets = [p for p, _ in cam.packets()]
    decoder = GatedDecoder(codec)
    decoder.decode(packets[:3])

    # Execute / Assert
    with pytest.raises(ValueError, match="expected packets in decode order"):
        decoder.decode([packets[1]])


def test_an_unknown_codec_is_refused() -> None:
    with pytest.raises(ValueError, match="'nonsense' cannot be decoded"):
        GatedDecoder(StreamCodec("nonsense", None, 16, 16, Fraction(1, 10)))


def test_rasl_pictures_decode_only_with_the_previous_gop_fed_first(
    tmp_path: Path,
) -> None:
    # Prepare: H.265 open GOPs; the gate asks for every RASL picture and nothing
    # else, then (second decoder) for every CRA at once and every RASL after it
    cfg = preset(
        "tiny",
        num_cameras=1,
        held_out_cameras=0,
        duration_s=6.0,
        codec="h265",
        gop=10,
        b_frames=2,
    )
    testbed, _ = generate_testbed(cfg, tmp_path, workers=1, progress=False)
    cam = testbed.camera(0)
    codec, truth = _full_decode(cam.path, cfg.fps)
    packets = [p for p, _ in cam.packets()]
    by_id = {p.decode_index: p for p in packets}
    rasl = [p.frame_index for p in packets if p.leading == "RASL"]
    outcomes: dict[str, list[int]] = {}

    # Execute
    for policy in ("rasl only", "cra first"):
        state, decoder, out = DependencyState(1), GatedDecoder(codec), []
        for packet in packets:
            cost = state.arrive(_arrivals(packet))
            wanted = packet.leading == "RASL" or (
                policy == "cra first" and packet.random_access
            )
            take = wanted and bool(np.isfinite(cost[0]))
            if take:
                out += decoder.decode(by_id[i] for i in state.needed(0))
            state.commit(np.array([take]))
        out += decoder.drain()
        for frame in out:
            np.testing.assert_array_equal(frame.image, truth[frame.frame_index])
        assert decoder.dropped_frames == 0
        outcomes[policy] = sorted(f.frame_index for f in out if f.frame_index in rasl)

    # Assert: alone, every RASL picture decodes (with the GOP before it); one
    # whose CRA was decoded without that GOP is not attempted, and nothing wrong
    # comes out
    assert rasl and outcomes["rasl only"] == sorted(rasl)
    assert set(outcomes["cra first"]) < set(rasl)


@pytest.mark.parametrize("codec", ["h264", "h265", "vp9"])
def test_a_refused_packet_hands_out_no_frame_that_may_depend_on_it(
    tmp_path: Path, codec: str
) -> None:
    # Prepare: GOP 10; packet 4 (a reference picture) has its first half zeroed,
    # which every decoder refuses
    cfg = preset(
        "tiny",
        num_cameras=1,
        held_out_cameras=0,
        duration_s=3.0,
        codec=codec,
        gop=10,
        b_frames=0 if codec == "vp9" else 2,
    )
    testbed, _ = generate_testbed(cfg, tmp_path, workers=1, progress=False)
    cam = testbed.camera(0)
    stream_codec, truth = _full_decode(cam.path, cfg.fps)
    packets = [p for p, _ in cam.packets()]
    bad = packets[4]
    half = len(bad.data) // 2
    packets[4] = dataclasses.replace(bad, data=bytes(half) + bad.data[half:])
    by_id = {p.decode_index: p for p in packets}
    state = DependencyState(1)
    decoder = GatedDecoder(stream_codec)
    out = []
    failures = []

    # Execute: decode everything the dependency state allows, as the loop does
    for packet in packets:
        take = bool(np.isfinite(state.arrive(_arrivals(packet))[0]))
        ids = state.needed(0) if take else []
        state.commit(np.array([take]))
        if ids:
            out += decoder.decode(by_id[i] for i in ids)
            if decoder.last_failure is not None:
                failures.append(decoder.last_failure)
                state.break_stream(0)
    out += decoder.drain()

    # Assert: one refusal naming the packet; nothing from it to the next key
    # frame comes out; everything that does is the true frame
    assert len(failures) == 1 and f"frame {bad.frame_index}" in failures[0]
    assert decoder.failures == 1
    next_key = next(p.decode_index for p in packets[5:] if p.random_access)
    suspect = {p.frame_index for p in packets[4:next_key]}
    handed = {f.frame_index for f in out}
    assert not handed & suspect
    # from the key frame on, all comes back (but the RASL pictures right after a
    # CRA that starts afresh, which reference the lost GOP)
    after = packets[next_key + 1 :]
    second_key = next((p.decode_index for p in after if p.random_access), None)
    lost = {p.frame_index for p in packets[next_key:second_key] if p.leading == "RASL"}
    assert handed >= {p.frame_index for p in packets[next_key:]} - lost
    for frame in out:
        np.testing.assert_array_equal(frame.image, truth[frame.frame_index])
