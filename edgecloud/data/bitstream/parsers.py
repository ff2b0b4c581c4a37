"""Choosing a packet parser by codec name, and timing one over a stream's packets."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from edgecloud.data.bitstream.errors import BitstreamError
from edgecloud.data.bitstream.h264 import H264Parser
from edgecloud.data.bitstream.h265 import H265Parser
from edgecloud.data.bitstream.picture import PictureInfo
from edgecloud.data.bitstream.vp9 import Vp9Parser

PacketParser = Callable[[bytes], PictureInfo]

# PyAV / FFmpeg codec name -> parser factory (taking the stream's extradata);
# "h265" is the testbed's name for "hevc".
PARSERS: dict[str, Callable[[bytes | None], PacketParser]] = {
    "h264": H264Parser,
    "hevc": H265Parser,
    "h265": H265Parser,
    "vp9": Vp9Parser,
}


def parser_for(codec_name: str, extradata: bytes | None) -> PacketParser:
    """A parser of one stream's packets into :class:`PictureInfo`.

    Parameters
    ----------
    codec_name : str
        PyAV's ``stream.codec_context.name``: ``"h264"``, ``"hevc"`` or ``"vp9"``.
    extradata : bytes | None
        ``stream.codec_context.extradata``: the avcC / hvcC record for H.264 /
        H.265 (required: it gives the NAL length size and, for H.265, the PPS);
        ignored for VP9.

    Returns
    -------
    Callable[[bytes], PictureInfo]
        Call it on each packet's bytes.

    Raises
    ------
    BitstreamError
        For an unsupported codec, or missing or garbled extradata.
    """
    factory = PARSERS.get(codec_name)
    if factory is None:
        raise BitstreamError(
            f"no packet parser for codec {codec_name!r}; supported codecs are "
            f"{sorted(PARSERS)}"
        )
    return factory(extradata)


def parse_seconds_per_packet(
    parse: PacketParser, packets: Sequence[bytes], repeats: int = 5
) -> float:
    """Seconds to parse one packet: the median over ``repeats`` passes over all.

    Parameters
    ----------
    parse : Callable[[bytes], PictureInfo]
        A parser from :func:`parser_for`.
    packets : Sequence[bytes]
        The packets of one stream (parsed once per pass, in this order).
    repeats : int
        Passes to time; the median pass is reported.

    Returns
    -------
    float
        Median seconds of one pass divided by the number of packets.
    """
    if not packets:
        raise ValueError("parse_seconds_per_packet got 0 packets; expected >= 1")
    if repeats < 1:
        raise ValueError(f"repeats is {repeats}; expected an int >= 1")
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for packet in packets:
            parse(packet)
        passes.append(time.perf_counter() - start)
    return statistics.median(passes) / len(packets)
