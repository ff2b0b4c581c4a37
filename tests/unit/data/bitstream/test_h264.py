"""H.264 AVCC packets: slice type, nal_ref_idc, IDR, avcC checks and errors."""

from __future__ import annotations

import pytest

from edgecloud.data.bitstream import BitstreamError, H264Parser, PictureInfo
from edgecloud.data.bitstream.h264 import parse_avcc
from tests.unit.data.bitstream.bitstream_utils import (
    H264_PPS,
    BitWriter,
    avcc,
    h264_nal,
    h264_slice,
    length_prefixed,
)

SEI = h264_nal(0, 6, b"\x05\x10" + b"\xaa" * 16 + b"\x80")
AUD = h264_nal(0, 9, b"\xf0")


@pytest.mark.parametrize(
    ("slice_type", "picture_type"),
    [
        (0, "P"),  # P slice
        (1, "B"),  # B slice
        (2, "I"),  # I slice
        (3, "P"),  # SP predicts like P
        (4, "I"),  # SI is intra
        (5, "P"),  # 5..9: 0..4 again, all slices of the picture alike
        (6, "B"),  # B, all slices (x264 writes these)
        (7, "I"),  # I, all slices
        (8, "P"),  # SP, all slices
        (9, "I"),  # SI, all slices
    ],
)
def test_slice_type_gives_the_picture_type(slice_type: int, picture_type: str) -> None:
    # Prepare
    parse = H264Parser(avcc())

    # Execute
    info = parse(length_prefixed(h264_slice(2, 1, slice_type)))

    # Assert
    assert info.picture_type == picture_type


@pytest.mark.parametrize(
    ("nal_ref_idc", "nal_type", "slice_type", "expected"),
    [
        # IDR: intra, reference, random access
        (3, 5, 7, PictureInfo("I", True, True, "", True, 5)),
        # a P picture others predict from
        (2, 1, 5, PictureInfo("P", True, False, "", True, 1)),
        # a B-pyramid middle picture: a reference B
        (2, 1, 6, PictureInfo("B", True, False, "", True, 1)),
        # a plain B picture: droppable
        (0, 1, 6, PictureInfo("B", False, False, "", True, 1)),
        # a non-IDR I picture (open GOP recovery point): not random access
        (1, 1, 7, PictureInfo("I", True, False, "", True, 1)),
    ],
)
def test_nal_header_gives_reference_and_random_access(
    nal_ref_idc: int, nal_type: int, slice_type: int, expected: PictureInfo
) -> None:
    # Prepare
    parse = H264Parser(avcc())

    # Execute
    info = parse(
        length_prefixed(AUD, SEI, h264_slice(nal_ref_idc, nal_type, slice_type))
    )

    # Assert: AUD and SEI skipped, the slice read
    assert info == expected


@pytest.mark.parametrize("length_size", [1, 2, 4])
def test_nal_length_size_comes_from_the_avcc_record(length_size: int) -> None:
    # Prepare
    parse = H264Parser(avcc(length_size))
    packet = length_prefixed(SEI, h264_slice(0, 1, 1), size=length_size)

    # Execute / Assert
    assert parse.length_size == length_size
    assert parse(packet).picture_type == "B"


def test_emulation_prevention_inside_the_slice_header_is_removed() -> None:
    # Prepare: first_mb_in_slice 2**23 - 1 starts with 23 zero bits, so the
    # encoder must escape "00 00 01" -> "00 00 03 01" before slice_type
    rbsp = BitWriter().ue(2**23 - 1).ue(1).ue(0).rbsp()
    nal = h264_nal(2, 1, rbsp)
    assert b"\x00\x00\x03" in nal and b"\x00\x00\x03" not in rbsp

    # Execute
    info = H264Parser(avcc())(length_prefixed(nal))

    # Assert: read without the 0x03, slice_type is B (with it: garbage)
    assert info.picture_type == "B"


def test_first_slice_decides_when_a_picture_has_several() -> None:
    # Prepare: an I slice then a P slice of the same picture
    packet = length_prefixed(h264_slice(3, 1, 2), h264_slice(3, 1, 0, first_mb=40))

    # Execute / Assert: what FFmpeg reports (the first slice's type)
    assert H264Parser(avcc())(packet).picture_type == "I"


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (b"", "no coded slice"),  # an empty packet
        (length_prefixed(SEI), "no coded slice"),  # SEI only
        (length_prefixed(h264_slice(2, 1, 0))[:-1], "claims"),  # NAL cut short
        (b"\x00\x00", "cut off"),  # a length prefix cut off
        (b"\x00\x00\x00\x01\x41", "runs out reading first_mb_in_slice"),  # header only
        (length_prefixed(b"\x41\x80"), "runs out reading slice_type"),  # 1 field only
        # slice_type 12 does not exist
        (length_prefixed(h264_nal(2, 1, BitWriter().ue(0).ue(12).rbsp())), "0..9"),
        (length_prefixed(b"\xc1\x88"), "forbidden_zero_bit"),  # corrupt NAL header
        (b"\x00\x00\x00\x01\x65\x88", "runs out"),  # Annex B given to an AVCC parser
    ],
)
def test_truncated_or_corrupt_packets_raise_with_the_reason(
    packet: bytes, message: str
) -> None:
    # Prepare
    parse = H264Parser(avcc())

    # Execute / Assert
    with pytest.raises(BitstreamError, match=message) as info:
        parse(packet)
    assert "\n" not in str(info.value) and "H.264 packet" in str(info.value)


@pytest.mark.parametrize(
    ("extradata", "message"),
    [
        (None, "needs the stream's avcC extradata"),  # missing
        (b"", "needs the stream's avcC extradata"),  # empty
        (b"\x00\x00\x00\x01\x67\x64", "Annex B"),  # start codes, not avcC
        (avcc()[:5], "cut off"),  # stops before the SPS count
        (b"\x02" + avcc()[1:], "configurationVersion is 2"),  # unknown version
        (avcc(3), "length size is 3"),  # lengthSizeMinusOne = 2 is reserved
        (avcc()[:-2], "PPS at byte"),  # PPS cut short
        (avcc(pps=b"\x67" + H264_PPS[1:]), "NAL unit type 7; expected 8"),  # SPS as PPS
    ],
)
def test_missing_or_garbled_avcc_names_what_is_wrong(
    extradata: bytes | None, message: str
) -> None:
    # Execute / Assert
    with pytest.raises(BitstreamError, match=message):
        parse_avcc(extradata)
    with pytest.raises(BitstreamError, match=message):
        H264Parser(extradata)
