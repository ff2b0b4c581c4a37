"""Packet headers parsed without decoding agree with FFmpeg's decoders.

On every codec, GOP and B-frame setting of the testbed: the picture type parsed
from each packet equals the decoder's ``pict_type`` for the frame with the same
pts (100 %), random access equals the container's key flag, and dropping every
packet parsed as non-reference leaves every other decoded picture bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import av
import pytest
from av.video.frame import PictureType

from edgecloud.data.bitstream import parse_seconds_per_packet
from edgecloud.data.testbed import (
    CameraVideo,
    PacketInfo,
    generate_testbed,
    load_testbed,
    preset,
)

Setting = tuple[str, int, int]  # (codec, gop, b_frames)
SETTINGS: list[Setting] = [
    ("h264", 1, 0),  # intra only
    ("h264", 1, 3),  # B-frames allowed but every frame a key frame: intra only
    ("h264", 10, 0),  # I and P
    ("h264", 10, 3),  # I, P and B with a B-pyramid (x264's default)
    ("h264", 300, 0),  # one GOP change in 31 s
    ("h264", 300, 3),
    ("h265", 1, 0),  # intra only (x265: an IDR, then CRA pictures)
    ("h265", 10, 0),
    ("h265", 10, 2),  # open GOPs: CRA key frames with RASL pictures
    ("h265", 300, 0),
    ("h265", 300, 2),
    ("vp9", 1, 0),
    ("vp9", 10, 0),
    ("vp9", 300, 0),
]
# A GOP of 300 needs a second key frame: 31 s at 10 fps; shorter GOPs need 3 s.
CameraFactory = Callable[[Setting], CameraVideo]


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> CameraFactory:
    """The one camera of a tiny testbed (160x120) per setting, generated once."""
    cache: dict[Setting, CameraVideo] = {}

    def make(setting: Setting) -> CameraVideo:
        if setting not in cache:
            codec, gop, b_frames = setting
            cfg = preset(
                "tiny",
                num_cameras=1,
                held_out_cameras=0,
                duration_s=31.0 if gop > 10 else 3.0,
                codec=codec,
                gop=gop,
                b_frames=b_frames,
            )
            root = tmp_path_factory.mktemp(f"{codec}-gop{gop}-b{b_frames}")
            generate_testbed(cfg, root, workers=1, progress=False)
            cache[setting] = load_testbed(root).camera(0)
        return cache[setting]

    return make


def _decode(
    cam: CameraVideo, packets: Sequence[PacketInfo]
) -> dict[int, tuple[str, bytes]]:
    """pts -> (decoder's picture type, decoded YUV bytes), feeding ``packets``."""
    decoder = cam.make_decoder()
    decoded: dict[int, tuple[str, bytes]] = {}

    def take(frames: list[av.VideoFrame]) -> None:
        for frame in frames:
            assert frame.pts is not None
            name = PictureType(frame.pict_type).name  # as CameraVideo.frames()
            decoded[frame.pts] = (name, frame.to_ndarray().tobytes())

    for info in packets:
        packet = av.Packet(info.data)
        packet.pts, packet.dts = info.pts, info.dts
        take(decoder.decode(packet))
    take(decoder.decode(None))
    return decoded


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(map(str, s)))
def test_parsed_picture_types_agree_with_the_decoder(
    camera: CameraFactory, setting: Setting
) -> None:
    # Prepare
    cam = camera(setting)
    packets = [p for p, _ in cam.packets()]

    # Execute
    decoded = _decode(cam, packets)

    # Assert: every frame decoded, every packet's type the decoder's (100 %)
    assert len(decoded) == len(packets) == len(cam.labels)
    parsed = {p.pts: p.picture_type for p in packets}
    assert parsed == {pts: name for pts, (name, _) in decoded.items()}
    # random access where the container flags a key frame, nowhere else
    assert [p.random_access for p in packets] == [p.keyframe for p in packets]
    # I and P pictures are always references in these encoders' streams
    assert all(p.reference for p in packets if p.picture_type != "B")


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "-".join(map(str, s)))
def test_dropping_non_reference_packets_harms_no_other_picture(
    camera: CameraFactory, setting: Setting
) -> None:
    # Prepare
    cam = camera(setting)
    packets = [p for p, _ in cam.packets()]
    kept = [p for p in packets if p.reference]

    # Execute
    full = _decode(cam, packets)
    thinned = _decode(cam, kept)

    # Assert: the kept pictures decode bit-identically without the dropped ones
    assert sorted(thinned) == sorted(p.pts for p in kept)
    assert all(thinned[pts] == full[pts] for pts in thinned)


@pytest.mark.parametrize(
    ("setting", "b_reference", "b_non_reference"),
    [
        (("h264", 10, 0), False, False),  # no B at all: every picture a reference
        (("h264", 300, 3), True, True),  # B-pyramid: middle B referenced, others not
        (("h265", 10, 2), True, True),  # x265's B-pyramid too (TRAIL_R / TRAIL_N)
        (("h265", 300, 0), False, False),
    ],
)
def test_b_pictures_are_references_only_with_b_pyramids(
    camera: CameraFactory,
    setting: Setting,
    b_reference: bool,
    b_non_reference: bool,
) -> None:
    # Prepare
    cam = camera(setting)
    packets = [p for p, _ in cam.packets()]

    # Execute
    b_refs = {p.reference for p in packets if p.picture_type == "B"}

    # Assert
    assert (True in b_refs) == b_reference
    assert (False in b_refs) == b_non_reference
    if not b_refs:
        assert all(p.reference for p in packets)
    else:
        # the reference B pictures are really referenced: without them, some
        # other picture decodes differently (or not at all)
        full = _decode(cam, packets)
        kept = [p for p in packets if p.picture_type != "B" or not p.reference]
        thinned = _decode(cam, kept)
        assert any(thinned.get(p.pts) != full[p.pts] for p in kept)


@pytest.mark.parametrize("setting", [("h265", 10, 2), ("h265", 10, 0)])
def test_h265_opens_with_an_idr_then_cra_key_frames_and_rasl_pictures(
    camera: CameraFactory, setting: Setting
) -> None:
    # Prepare
    cam = camera(setting)
    packets = [p for p, _ in cam.packets()]
    parse = cam.picture_parser()
    nal_types = {p.decode_index: parse(p.data).nal_unit_type for p in packets}

    # Execute
    key = [p for p in packets if p.random_access]
    rasl = [p for p in packets if p.leading == "RASL"]

    # Assert: IDR first, CRA (open GOP) at every later key frame
    assert [p.frame_index for p in key] == list(range(0, len(packets), 10))
    assert nal_types[key[0].decode_index] in (19, 20)
    assert {nal_types[p.decode_index] for p in key[1:]} == {21}
    # RASL pictures with B-frames only: decoded after their CRA, shown before it
    assert bool(rasl) == (setting[2] > 0)
    for leading in rasl:
        cra = [p for p in key if p.decode_index < leading.decode_index][-1]
        assert cra.decode_index > 0 and cra.frame_index > leading.frame_index
        assert leading.picture_type == "B"  # what FFmpeg reports for them here


@pytest.mark.parametrize("codec", ["h264", "h265", "vp9"])
def test_parsing_costs_microseconds_per_packet(
    camera: CameraFactory, codec: str
) -> None:
    # Prepare
    cam = camera((codec, 10, 0))
    parse = cam.picture_parser()
    packets = [p.data for p, _ in cam.packets()]

    # Execute
    seconds = parse_seconds_per_packet(parse, packets, repeats=3)

    # Assert: far below decoding (a loose bound: 2 slow CPU cores, shared)
    assert 0 < seconds < 2e-4
