"""H.264 picture type and reference flag from AVCC packets, without decoding.

Reads the NAL header (``nal_ref_idc``, ``nal_unit_type``) and the first two
fields of the first slice header (``first_mb_in_slice``, ``slice_type``). The
NAL length size comes from the avcC record (the stream's extradata).

Why not a library: no maintained PyPI package reads these fields from AVCC
packets (h26x-extractor parses H.264 Annex B files only and says it is no longer
maintained; bitstring is a generic bit reader; PyAV gives the picture type only
after decoding). See :mod:`edgecloud.data.bitstream`.
"""

from __future__ import annotations

from edgecloud.data.bitstream.errors import BitstreamError
from edgecloud.data.bitstream.nal import check_length_size, iter_nal_units
from edgecloud.data.bitstream.picture import PictureInfo, PictureType
from edgecloud.data.bitstream.reader import BitReader, remove_emulation_prevention

NAL_SLICE = 1  # coded slice of a non-IDR picture
NAL_SLICE_PARTITION_A = 2  # data partition A: starts with the same slice header
NAL_IDR_SLICE = 5
NAL_SPS = 7
NAL_PPS = 8
_SLICE_NAL_TYPES = frozenset({NAL_SLICE, NAL_SLICE_PARTITION_A, NAL_IDR_SLICE})
# slice_type % 5 -> picture type; SP predicts like P, SI is intra like I
_SLICE_TYPES: tuple[PictureType, ...] = ("P", "B", "I", "P", "I")
# Two ue(v) codes of at most 65 bits each: the RBSP prefix that holds them (copying
# a whole multi-kilobyte slice to drop emulation-prevention bytes is wasted work).
_HEADER_BYTES = 32


def parse_avcc(extradata: bytes | None) -> int:
    """The NAL length size (1, 2 or 4) of an avcC record, after checking it.

    Parameters
    ----------
    extradata : bytes | None
        The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1): version 1,
        profile, compatibility, level, ``lengthSizeMinusOne``, then the SPS and
        PPS, each after a 16-bit length.

    Returns
    -------
    int
        Bytes in each packet's NAL unit length prefix.

    Raises
    ------
    BitstreamError
        If the record is missing, in Annex B form, or garbled (names the field).
    """
    if not extradata:
        raise BitstreamError(
            "H.264 needs the stream's avcC extradata (codec_context.extradata) for "
            "the NAL length size; got none (an MP4/Matroska H.264 stream has one)"
        )
    if extradata.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        raise BitstreamError(
            "H.264 extradata is an Annex B byte stream (start codes); expected an "
            "avcC record (length-prefixed packets, as muxed in MP4/Matroska)"
        )
    if len(extradata) < 7:
        raise BitstreamError(
            f"H.264 avcC extradata is cut off: {len(extradata)} bytes, expected at "
            "least 7 (header, SPS count, PPS count)"
        )
    if extradata[0] != 1:
        raise BitstreamError(
            f"H.264 avcC configurationVersion is {extradata[0]} at byte 0; expected 1"
        )
    length_size = check_length_size((extradata[4] & 0x03) + 1, "H.264 avcC")
    pos = 5
    for name, nal_type, count_mask in (("SPS", NAL_SPS, 0x1F), ("PPS", NAL_PPS, 0xFF)):
        if pos >= len(extradata):
            raise BitstreamError(
                f"H.264 avcC extradata is cut off at byte {pos}: no {name} count"
            )
        count = extradata[pos] & count_mask
        pos += 1
        for _ in range(count):
            length = int.from_bytes(extradata[pos : pos + 2], "big")
            end = pos + 2 + length
            if pos + 2 > len(extradata) or end > len(extradata) or length == 0:
                raise BitstreamError(
                    f"H.264 avcC extradata: the {name} at byte {pos} claims {length} "
                    f"bytes, {max(len(extradata) - pos - 2, 0)} are left"
                )
            if extradata[pos + 2] & 0x1F != nal_type:
                raise BitstreamError(
                    f"H.264 avcC extradata: the {name} at byte {pos + 2} has NAL "
                    f"unit type {extradata[pos + 2] & 0x1F}; expected {nal_type}"
                )
            pos = end
    return length_size


class H264Parser:
    """Parse AVCC packets of one H.264 stream into :class:`PictureInfo`.

    Parameters
    ----------
    extradata : bytes | None
        The stream's avcC record (``stream.codec_context.extradata`` in PyAV).

    Raises
    ------
    BitstreamError
        If the extradata is missing or garbled.
    """

    def __init__(self, extradata: bytes | None) -> None:
        self.length_size = parse_avcc(extradata)

    def __call__(self, packet: bytes) -> PictureInfo:
        """The picture of one packet (one access unit, decode order irrelevant).

        Raises
        ------
        BitstreamError
            If the packet is truncated, corrupt or holds no coded slice.
        """
        context = f"H.264 packet of {len(packet)} bytes"
        for offset, nal in iter_nal_units(packet, self.length_size, context):
            header = nal[0]
            nal_type = header & 0x1F
            if nal_type not in _SLICE_NAL_TYPES:
                continue  # SEI, AUD, in-band parameter sets, ...
            if header & 0x80:
                raise BitstreamError(
                    f"{context}: forbidden_zero_bit set in the NAL unit header at "
                    f"byte {offset} (corrupt data, or not length-prefixed)"
                )
            reader = BitReader(
                remove_emulation_prevention(nal[1 : 1 + _HEADER_BYTES]),
                f"{context}: slice header of NAL unit type {nal_type}",
                offset + 1,
            )
            reader.ue("first_mb_in_slice")
            slice_type = reader.ue("slice_type")
            if slice_type > 9:
                raise BitstreamError(
                    f"{context}: slice_type {slice_type} in the NAL unit at byte "
                    f"{offset}; expected 0..9"
                )
            return PictureInfo(
                picture_type=_SLICE_TYPES[slice_type % 5],
                reference=header >> 5 != 0,  # nal_ref_idc
                random_access=nal_type == NAL_IDR_SLICE,
                leading="",
                shown=True,
                nal_unit_type=nal_type,
            )
        raise BitstreamError(
            f"{context}: no coded slice NAL unit (type 1, 2 or 5) found"
        )
