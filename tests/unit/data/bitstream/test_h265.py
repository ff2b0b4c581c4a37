"""H.265 HVCC packets: slice type, NAL types (reference, IRAP, RADL/RASL), hvcC."""

from __future__ import annotations

import pytest

from edgecloud.data.bitstream import BitstreamError, H265Parser, PictureInfo
from edgecloud.data.bitstream.h265 import PpsFields, is_reference, parse_hvcc
from tests.unit.data.bitstream.bitstream_utils import (
    H265_SPS,
    H265_VPS,
    default_hvcc,
    h265_header,
    h265_pps,
    h265_slice,
    hvcc,
    length_prefixed,
)

AUD = h265_header(35) + b"\x50"
PREFIX_SEI = h265_header(39) + b"\x05\x04" + b"\xab" * 4 + b"\x80"


@pytest.mark.parametrize(
    ("nal_type", "slice_type", "expected"),
    [
        # TRAIL_N: a sub-layer non-reference picture (x265's plain B)
        (0, 0, PictureInfo("B", False, False, "", True, 0)),
        # TRAIL_R: referenced (P, or a B-pyramid B)
        (1, 1, PictureInfo("P", True, False, "", True, 1)),
        (1, 0, PictureInfo("B", True, False, "", True, 1)),
        # TSA_N / STSA_R: temporal sub-layer switching, N = not referenced
        (2, 0, PictureInfo("B", False, False, "", True, 2)),
        (5, 1, PictureInfo("P", True, False, "", True, 5)),
        # RADL_N / RADL_R: leading pictures decodable from the IRAP on
        (6, 0, PictureInfo("B", False, False, "RADL", True, 6)),
        (7, 0, PictureInfo("B", True, False, "RADL", True, 7)),
        # RASL_N / RASL_R: leading pictures that reference the previous GOP
        (8, 0, PictureInfo("B", False, False, "RASL", True, 8)),
        (9, 0, PictureInfo("B", True, False, "RASL", True, 9)),
        # BLA_W_LP, IDR_W_RADL, IDR_N_LP, CRA_NUT: IRAP, random access
        (16, 2, PictureInfo("I", True, True, "", True, 16)),
        (19, 2, PictureInfo("I", True, True, "", True, 19)),
        (20, 2, PictureInfo("I", True, True, "", True, 20)),
        (21, 2, PictureInfo("I", True, True, "", True, 21)),
    ],
)
def test_nal_type_and_slice_type_give_the_picture(
    nal_type: int, slice_type: int, expected: PictureInfo
) -> None:
    # Prepare
    parse = H265Parser(default_hvcc())
    packet = length_prefixed(AUD, PREFIX_SEI, h265_slice(nal_type, slice_type))

    # Execute / Assert: AUD and SEI skipped, the slice read
    assert parse(packet) == expected


@pytest.mark.parametrize(
    ("nal_type", "reference"),
    [(t, t > 14 or t % 2 == 1) for t in range(32)],  # even types up to 14 are *_N
)
def test_sub_layer_non_reference_types_are_the_even_ones_up_to_14(
    nal_type: int, reference: bool
) -> None:
    # Execute / Assert
    assert is_reference(nal_type) == reference


def test_pps_fields_come_from_the_hvcc_arrays() -> None:
    # Prepare: two PPS, one with every field set
    pps = [h265_pps(0), h265_pps(5, 3, True, True, 6)]

    # Execute
    length_size, fields = parse_hvcc(default_hvcc(*pps, length_size=2))

    # Assert
    assert length_size == 2
    assert fields == {
        0: PpsFields(0, 0, False, False, 0),
        5: PpsFields(5, 3, True, True, 6),
    }


@pytest.mark.parametrize("extra_bits", [1, 3, 7])
def test_extra_slice_header_bits_of_the_pps_are_skipped(extra_bits: int) -> None:
    # Prepare: the slice uses PPS 2, whose extra bits come before slice_type
    parse = H265Parser(default_hvcc(h265_pps(0), h265_pps(2, extra_bits=extra_bits)))
    packet = length_prefixed(h265_slice(1, 1, pps_id=2, extra_bits=extra_bits))

    # Execute / Assert: P (reading the extra 1-bits as slice_type would not be)
    assert parse(packet).picture_type == "P"


def test_non_first_slice_segments_and_other_layers_are_skipped() -> None:
    # Prepare: a continuation segment, an enhancement-layer slice, then the
    # picture's first slice segment
    packet = length_prefixed(
        h265_slice(1, 2, first_in_pic=False),
        h265_slice(1, 2, layer_id=1),
        h265_slice(0, 0),
    )

    # Execute / Assert
    assert H265Parser(default_hvcc())(packet) == PictureInfo(
        "B", False, False, "", True, 0
    )


def test_a_pps_inside_a_packet_replaces_the_extradata_one() -> None:
    # Prepare: extradata PPS 0 has no extra bits, the in-band one has 2
    parse = H265Parser(default_hvcc())
    packet = length_prefixed(h265_pps(0, extra_bits=2), h265_slice(19, 2, extra_bits=2))

    # Execute / Assert
    assert parse(packet).picture_type == "I"
    assert parse.pps[0].num_extra_slice_header_bits == 2


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        # empty packet
        (b"", "no first slice segment"),
        # only a continuation segment
        (length_prefixed(h265_slice(1, 1, first_in_pic=False)), "no first slice"),
        # reserved VCL types are ignored, as decoders do
        (length_prefixed(h265_slice(10, 1)), "no first slice segment"),
        # a slice of a PPS the stream does not have
        (length_prefixed(h265_slice(1, 1, pps_id=9)), r"PPS id 9; .* PPS ids \[0\]"),
        # the NAL unit runs past the packet
        (length_prefixed(h265_slice(1, 1))[:-2], "claims"),
        # a NAL unit of one byte
        (length_prefixed(b"\x02"), "header alone needs 2"),
        # temporal_id_plus1 = 0 is forbidden
        (length_prefixed(b"\x02\x00\x80"), "invalid NAL unit header 0200"),
        # the slice header stops before slice_type
        (length_prefixed(h265_header(1) + b"\xc0"), "runs out reading slice_type"),
        # slice_type 3 does not exist
        (length_prefixed(h265_header(1) + b"\xc9"), r"slice_type 3 .* expected"),
    ],
)
def test_truncated_or_corrupt_packets_raise_with_the_reason(
    packet: bytes, message: str
) -> None:
    # Prepare
    parse = H265Parser(default_hvcc())

    # Execute / Assert
    with pytest.raises(BitstreamError, match=message) as info:
        parse(packet)
    assert "\n" not in str(info.value) and "H.265 packet" in str(info.value)


@pytest.mark.parametrize(
    ("extradata", "message"),
    [
        # missing
        (None, "needs the stream's hvcC extradata"),
        # Annex B parameter sets instead of an hvcC record
        (b"\x00\x00\x00\x01" + H265_VPS, "Annex B"),
        # shorter than the fixed header
        (default_hvcc()[:20], "cut off: 20 bytes"),
        # unknown version
        (b"\x00" + default_hvcc()[1:], "configurationVersion is 0"),
        # lengthSizeMinusOne = 2 is reserved
        (default_hvcc(length_size=3), "length size is 3"),
        # no PPS array: slice headers cannot be read
        (hvcc((32, [H265_VPS]), (33, [H265_SPS])), "holds no PPS"),
        # the last NAL unit cut short
        (default_hvcc()[:-3], "claims"),
        # an array header missing
        (default_hvcc()[:23], "array header"),
        # a PPS whose fields run out
        (hvcc((34, [h265_header(34) + b"\x00"])), "runs out reading pps_pic"),
    ],
)
def test_missing_or_garbled_hvcc_names_what_is_wrong(
    extradata: bytes | None, message: str
) -> None:
    # Execute / Assert
    with pytest.raises(BitstreamError, match=message):
        H265Parser(extradata)
