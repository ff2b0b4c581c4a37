"""H.265 picture type, reference flag and leading kind from HVCC packets, no decoding.

Reads the PPS fields the slice segment header depends on from the hvcC record
(the stream's extradata), then per packet the 2-byte NAL header and the slice
segment header of the picture's first slice segment up to ``slice_type``. No
maintained PyPI package does this for HVCC packets (see
:mod:`edgecloud.data.bitstream`).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecloud.data.bitstream.errors import BitstreamError
from edgecloud.data.bitstream.nal import check_length_size, iter_nal_units
from edgecloud.data.bitstream.picture import LeadingKind, PictureInfo, PictureType
from edgecloud.data.bitstream.reader import BitReader, remove_emulation_prevention

# NAL unit types (H.265 table 7-1)
RADL_N, RADL_R, RASL_N, RASL_R = 6, 7, 8, 9
BLA_W_LP, IDR_W_RADL, IDR_N_LP, CRA_NUT = 16, 19, 20, 21
RSV_IRAP_VCL23 = 23
PPS_NUT = 34
# Slice NAL unit types a decoder reads; the reserved VCL types (10..15, 22..31)
# are ignored by decoders, so they are skipped here too.
_SLICE_NAL_TYPES = frozenset(range(10)) | frozenset(range(BLA_W_LP, CRA_NUT + 1))
_SLICE_TYPES: tuple[PictureType, ...] = ("B", "P", "I")  # slice_type 0, 1, 2
_HVCC_HEADER_BYTES = 23  # up to and including numOfArrays
# The header fields read below take at most 2 + 65 + 7 + 65 bits: an RBSP prefix
# this long always holds them (see h264._HEADER_BYTES).
_HEADER_BYTES = 48


def is_reference(nal_unit_type: int) -> bool:
    """Whether a picture of this VCL NAL unit type may be referenced.

    The sub-layer non-reference types TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N and
    RSV_VCL_N10/12/14 (the even types up to 14) are not; every other one is.
    """
    return not (nal_unit_type <= 14 and nal_unit_type % 2 == 0)


def leading_kind(nal_unit_type: int) -> LeadingKind:
    """``"RADL"`` for types 6-7, ``"RASL"`` for types 8-9, else ``""``."""
    if nal_unit_type in (RADL_N, RADL_R):
        return "RADL"
    if nal_unit_type in (RASL_N, RASL_R):
        return "RASL"
    return ""


@dataclass(frozen=True)
class PpsFields:
    """The PPS fields that come before ``slice_type`` in a slice segment header."""

    pps_id: int
    sps_id: int
    dependent_slice_segments_enabled: bool
    output_flag_present: bool
    num_extra_slice_header_bits: int


def parse_pps(nal: bytes, offset: int = 0) -> PpsFields:
    """Read the leading fields of a PPS NAL unit (2-byte header included).

    Parameters
    ----------
    nal : bytes
        The NAL unit, as stored in the hvcC record or a packet.
    offset : int
        Where it lies in its record or packet (for error messages).

    Returns
    -------
    PpsFields
        ``pps_pic_parameter_set_id`` through ``num_extra_slice_header_bits``.
    """
    reader = BitReader(remove_emulation_prevention(nal[2:]), "H.265 PPS", offset + 2)
    pps_id = reader.ue("pps_pic_parameter_set_id")
    sps_id = reader.ue("pps_seq_parameter_set_id")
    if pps_id > 63 or sps_id > 15:
        raise BitstreamError(
            f"H.265 PPS at byte {offset}: pps id {pps_id} / sps id {sps_id}; "
            "expected at most 63 / 15"
        )
    return PpsFields(
        pps_id=pps_id,
        sps_id=sps_id,
        dependent_slice_segments_enabled=reader.read_flag(
            "dependent_slice_segments_enabled_flag"
        ),
        output_flag_present=reader.read_flag("output_flag_present_flag"),
        num_extra_slice_header_bits=reader.read_bits(3, "num_extra_slice_header_bits"),
    )


def parse_hvcc(extradata: bytes | None) -> tuple[int, dict[int, PpsFields]]:
    """The NAL length size and the PPSs (by id) of an hvcC record.

    Parameters
    ----------
    extradata : bytes | None
        The HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1): 23 bytes
        of header (``lengthSizeMinusOne`` in the low bits of byte 21, the number
        of arrays in byte 22), then per array a NAL unit type byte, a 16-bit count
        and the NAL units, each after a 16-bit length.

    Returns
    -------
    tuple[int, dict[int, PpsFields]]
        Bytes in each packet's NAL length prefix; the PPS fields by PPS id.

    Raises
    ------
    BitstreamError
        If the record is missing, in Annex B form, garbled, or holds no PPS.
    """
    if not extradata:
        raise BitstreamError(
            "H.265 needs the stream's hvcC extradata (codec_context.extradata) for "
            "the NAL length size and the PPS; got none (an MP4/Matroska H.265 "
            "stream has one)"
        )
    if extradata.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        raise BitstreamError(
            "H.265 extradata is an Annex B byte stream (start codes); expected an "
            "hvcC record (length-prefixed packets, as muxed in MP4/Matroska)"
        )
    if len(extradata) < _HVCC_HEADER_BYTES:
        raise BitstreamError(
            f"H.265 hvcC extradata is cut off: {len(extradata)} bytes, expected at "
            f"least {_HVCC_HEADER_BYTES} before the parameter set arrays"
        )
    if extradata[0] != 1:
        raise BitstreamError(
            f"H.265 hvcC configurationVersion is {extradata[0]} at byte 0; expected 1"
        )
    length_size = check_length_size((extradata[21] & 0x03) + 1, "H.265 hvcC")
    pps: dict[int, PpsFields] = {}
    pos = _HVCC_HEADER_BYTES
    for _ in range(extradata[22]):
        if pos + 3 > len(extradata):
            raise BitstreamError(
                f"H.265 hvcC extradata is cut off at byte {pos}: a parameter set "
                "array header (3 bytes) is missing"
            )
        array_type = extradata[pos] & 0x3F
        count = int.from_bytes(extradata[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            length = int.from_bytes(extradata[pos : pos + 2], "big")
            start, end = pos + 2, pos + 2 + length
            if end > len(extradata) or length < 2:
                raise BitstreamError(
                    f"H.265 hvcC extradata: the NAL unit at byte {pos} (array of "
                    f"type {array_type}) claims {length} bytes, "
                    f"{max(len(extradata) - start, 0)} are left"
                )
            nal = extradata[start:end]
            if (nal[0] >> 1) & 0x3F == PPS_NUT:
                fields = parse_pps(nal, start)
                pps[fields.pps_id] = fields
            pos = end
    if not pps:
        raise BitstreamError(
            "H.265 hvcC extradata holds no PPS (NAL unit type 34); the slice "
            "headers cannot be read without it"
        )
    return length_size, pps


class H265Parser:
    """Parse HVCC packets of one H.265 stream into :class:`PictureInfo`.

    Each packet is one picture: its first slice segment with
    ``first_slice_segment_in_pic_flag = 1`` gives the picture type (what FFmpeg's
    decoder reports); slice segments of other pictures' continuations, which
    would need the SPS for ``slice_segment_address``, are skipped. A PPS inside a
    packet replaces the extradata's one with its id, as it does in a decoder.

    Parameters
    ----------
    extradata : bytes | None
        The stream's hvcC record (``stream.codec_context.extradata`` in PyAV).

    Raises
    ------
    BitstreamError
        If the extradata is missing or garbled.
    """

    def __init__(self, extradata: bytes | None) -> None:
        self.length_size, self.pps = parse_hvcc(extradata)

    def __call__(self, packet: bytes) -> PictureInfo:
        """The picture of one packet.

        Raises
        ------
        BitstreamError
            If the packet is truncated, corrupt, refers to an unknown PPS or holds
            no first slice segment of a picture.
        """
        context = f"H.265 packet of {len(packet)} bytes"
        for offset, nal in iter_nal_units(packet, self.length_size, context):
            if len(nal) < 2:
                raise BitstreamError(
                    f"{context}: the NAL unit at byte {offset} has {len(nal)} byte; "
                    "its header alone needs 2"
                )
            nal_type = (nal[0] >> 1) & 0x3F
            if nal[0] & 0x80 or nal[1] & 0x07 == 0:
                raise BitstreamError(
                    f"{context}: invalid NAL unit header {nal[:2].hex()} at byte "
                    f"{offset} (forbidden_zero_bit set or temporal_id_plus1 = 0)"
                )
            if nal_type == PPS_NUT:
                fields = parse_pps(nal, offset)
                self.pps[fields.pps_id] = fields
                continue
            layer_id = ((nal[0] & 0x01) << 5) | (nal[1] >> 3)
            if nal_type not in _SLICE_NAL_TYPES or layer_id:
                continue  # SEI, AUD, parameter sets, enhancement layers
            slice_type = self._slice_type(nal, nal_type, offset, context)
            if slice_type is None:
                continue  # not the picture's first slice segment
            return PictureInfo(
                picture_type=slice_type,
                reference=is_reference(nal_type),
                random_access=BLA_W_LP <= nal_type <= RSV_IRAP_VCL23,
                leading=leading_kind(nal_type),
                shown=True,
                nal_unit_type=nal_type,
            )
        raise BitstreamError(
            f"{context}: no first slice segment of a picture (VCL NAL unit with "
            "first_slice_segment_in_pic_flag = 1) found"
        )

    def _slice_type(
        self, nal: bytes, nal_type: int, offset: int, context: str
    ) -> PictureType | None:
        """``slice_type`` of a first slice segment; ``None`` for other segments."""
        reader = BitReader(
            remove_emulation_prevention(nal[2 : 2 + _HEADER_BYTES]),
            f"{context}: slice segment header of NAL unit type {nal_type}",
            offset + 2,
        )
        if not reader.read_flag("first_slice_segment_in_pic_flag"):
            return None
        if BLA_W_LP <= nal_type <= RSV_IRAP_VCL23:
            reader.read_flag("no_output_of_prior_pics_flag")
        pps_id = reader.ue("slice_pic_parameter_set_id")
        pps = self.pps.get(pps_id)
        if pps is None:
            raise BitstreamError(
                f"{context}: the slice at byte {offset} uses PPS id {pps_id}; the "
                f"stream has PPS ids {sorted(self.pps)}"
            )
        reader.skip_bits(pps.num_extra_slice_header_bits, "slice_reserved_flag")
        slice_type = reader.ue("slice_type")
        if slice_type > 2:
            raise BitstreamError(
                f"{context}: slice_type {slice_type} in the NAL unit at byte "
                f"{offset}; expected 0 (B), 1 (P) or 2 (I)"
            )
        return _SLICE_TYPES[slice_type]
