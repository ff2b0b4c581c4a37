"""Picture type and reference flag of H.264 / H.265 / VP9 packets, without decoding.

The fields come from the packets' headers (no flwr import, no PyAV import).

``parser_for(stream.codec_context.name, stream.codec_context.extradata)`` gives a
callable that turns one demuxed packet's bytes into a :class:`PictureInfo`; the
testbed's :class:`~edgecloud.data.testbed.readers.PacketInfo` carries its fields.

Why our own parsers: no maintained PyPI library reads these fields from the
length-prefixed (AVCC / HVCC) packets that MP4 and Matroska hold. h26x-extractor
parses H.264 Annex B files only and says it is no longer maintained; bitstring
is a generic bit reader without codec syntax; PyAV / FFmpeg report the picture
type only on decoded frames. What is needed is small (a NAL header and the first
fields of a slice header, or the first bits of a VP9 frame header), and the
integration tests check every testbed setting against FFmpeg's decoders.
"""

from edgecloud.data.bitstream.errors import BitstreamError
from edgecloud.data.bitstream.h264 import H264Parser
from edgecloud.data.bitstream.h265 import H265Parser
from edgecloud.data.bitstream.parsers import (
    PARSERS,
    PacketParser,
    parse_seconds_per_packet,
    parser_for,
)
from edgecloud.data.bitstream.picture import PictureInfo
from edgecloud.data.bitstream.reader import BitReader, remove_emulation_prevention
from edgecloud.data.bitstream.vp9 import Vp9Parser

__all__ = [
    "PARSERS",
    "BitReader",
    "BitstreamError",
    "H264Parser",
    "H265Parser",
    "PacketParser",
    "PictureInfo",
    "Vp9Parser",
    "parse_seconds_per_packet",
    "parser_for",
    "remove_emulation_prevention",
]
