"""Choosing a parser by PyAV codec name, and timing one."""

from __future__ import annotations

import pytest

from edgecloud.data.bitstream import (
    BitstreamError,
    H264Parser,
    H265Parser,
    PictureInfo,
    Vp9Parser,
    parse_seconds_per_packet,
    parser_for,
)
from tests.unit.data.bitstream.bitstream_utils import (
    avcc,
    default_hvcc,
    h264_slice,
    length_prefixed,
    vp9_key_frame,
)


@pytest.mark.parametrize(
    ("codec", "extradata", "parser_type"),
    [
        ("h264", avcc(), H264Parser),  # PyAV's name for H.264
        ("hevc", default_hvcc(), H265Parser),  # PyAV's name for H.265
        ("h265", default_hvcc(), H265Parser),  # the testbed's name for it
        ("vp9", None, Vp9Parser),  # WebM VP9 has no extradata
        ("vp9", b"\x01\x01\x00", Vp9Parser),  # or codec features: ignored
    ],
)
def test_parser_for_chooses_by_codec_name(
    codec: str, extradata: bytes | None, parser_type: type
) -> None:
    # Execute / Assert
    assert isinstance(parser_for(codec, extradata), parser_type)


@pytest.mark.parametrize(
    ("codec", "extradata", "message"),
    [
        # a codec without a parser: named, with the supported ones
        ("av1", None, r"codec 'av1'; supported codecs are \['h264', 'h265'"),
        # H.264 without its avcC record
        ("h264", None, "avcC extradata"),
        # H.265 without its hvcC record
        ("hevc", b"", "hvcC extradata"),
        # H.265 given an avcC record
        ("hevc", avcc(), "cut off"),
    ],
)
def test_parser_for_rejects_unknown_codecs_and_missing_extradata(
    codec: str, extradata: bytes | None, message: str
) -> None:
    # Execute / Assert
    with pytest.raises(BitstreamError, match=message):
        parser_for(codec, extradata)


def test_parse_seconds_per_packet_parses_every_packet_each_repeat() -> None:
    # Prepare
    parse = parser_for("h264", avcc())
    packets = [length_prefixed(h264_slice(2, 1, t)) for t in (0, 1, 2)]
    calls: list[bytes] = []

    def counting(packet: bytes) -> PictureInfo:
        calls.append(packet)
        return parse(packet)

    # Execute
    seconds = parse_seconds_per_packet(counting, packets, repeats=3)

    # Assert
    assert calls == packets * 3
    assert 0 < seconds < 1e-2


@pytest.mark.parametrize(
    ("packets", "repeats", "message"),
    [
        ([], 5, "0 packets"),  # nothing to time
        ([vp9_key_frame()], 0, "repeats is 0"),  # no pass to take the median of
    ],
)
def test_parse_seconds_per_packet_needs_packets_and_repeats(
    packets: list[bytes], repeats: int, message: str
) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=message):
        parse_seconds_per_packet(Vp9Parser(), packets, repeats)
