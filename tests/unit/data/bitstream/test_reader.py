"""The RBSP bit reader: fixed fields, Exp-Golomb codes, emulation prevention, errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecloud.data.bitstream import BitReader, BitstreamError
from edgecloud.data.bitstream.reader import remove_emulation_prevention
from tests.unit.data.bitstream.bitstream_utils import (
    BitWriter,
    add_emulation_prevention,
)


def test_fixed_width_fields_and_flags_cross_byte_boundaries() -> None:
    # Prepare: 3, 1, 0x1ABC (13 bits), 0, 0x3F (6 bits) = 24 bits
    data = BitWriter().u(2, 3).flag(1).u(13, 0x1ABC).flag(0).u(6, 0x3F).to_bytes()
    reader = BitReader(data)

    # Execute
    fields = [
        reader.read_bits(2),
        reader.read_flag(),
        reader.read_bits(13),
        reader.read_flag(),
        reader.read_bits(0),
        reader.read_bits(6),
    ]

    # Assert
    assert fields == [3, True, 0x1ABC, False, 0, 0x3F]
    assert reader.bit_position == 23 and reader.bits_left == 1


@pytest.mark.parametrize(
    "value",
    [
        0,  # the 1-bit code "1"
        1,  # "010"
        2,  # "011"
        7,  # "0001000": first value needing 3 leading zeros
        255,
        65_535,
        2**31,  # beyond a signed 32-bit int
        2**32 - 2,  # the largest value H.264 ue(v) syntax allows
        2**32 - 1,  # needs all 32 leading zeros the reader accepts
    ],
)
def test_unsigned_exp_golomb_round_trips(value: int) -> None:
    # Prepare
    data = BitWriter().ue(value).flag(1).to_bytes()

    # Execute
    reader = BitReader(data)
    decoded = reader.ue()

    # Assert: the whole code is consumed, the following bit is intact
    assert decoded == value
    assert reader.read_flag() is True


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (0, "1"),  # ue 0
        (1, "010"),  # ue 1
        (-1, "011"),  # ue 2
        (2, "00100"),  # ue 3
        (-2, "00101"),  # ue 4
        (2**31 - 1, None),  # large positive
        (-(2**31), None),  # large negative
    ],
)
def test_signed_exp_golomb_alternates_signs(value: int, code: str | None) -> None:
    # Prepare
    writer = BitWriter().se(value)
    if code is not None:
        assert "".join(map(str, writer.bits)) == code  # the writer follows the spec

    # Execute / Assert
    assert BitReader(writer.to_bytes()).se() == value


@given(
    st.lists(
        st.tuples(st.sampled_from(["ue", "se", "u"]), st.integers(0, 2**32 - 2)),
        max_size=20,
    )
)
def test_mixed_fields_round_trip(fields: list[tuple[str, int]]) -> None:
    # Prepare
    writer = BitWriter()
    expected = []
    for kind, value in fields:
        if kind == "ue":
            writer.ue(value)
            expected.append(value)
        elif kind == "se":
            signed = value // 2 if value % 2 else -(value // 2)
            writer.se(signed)
            expected.append(signed)
        else:
            writer.u(32, value)
            expected.append(value)
    reader = BitReader(writer.to_bytes())

    # Execute
    decoded = [
        reader.ue() if k == "ue" else reader.se() if k == "se" else reader.read_bits(32)
        for k, _ in fields
    ]

    # Assert
    assert decoded == expected


@pytest.mark.parametrize(
    ("read", "data"),
    [
        (lambda r: r.read_bits(9), b"\xff"),  # 9 bits wanted, 8 there
        (lambda r: [r.read_bits(8), r.read_flag()], b"\xff"),  # one flag too many
        (lambda r: r.ue(), b"\x00\x00"),  # leading zeros run to the end
        (lambda r: r.ue(), b"\x00\x80"),  # 8 zeros, 1, then 8 suffix bits missing
        (lambda r: r.se(), b""),  # nothing at all
        (lambda r: r.skip_bits(17), b"\x00\x00"),  # skipping past the end
    ],
)
def test_running_out_of_data_is_a_bitstream_error_not_an_index_error(
    read: Callable[[BitReader], object], data: bytes
) -> None:
    # Prepare
    reader = BitReader(data, "test data", offset=100)

    # Execute / Assert
    with pytest.raises(BitstreamError, match=r"^test data: data runs out .* 10\d$"):
        read(reader)


def test_exp_golomb_with_too_many_leading_zeros_is_corrupt() -> None:
    # Prepare: 40 zero bits, then a one
    data = b"\x00" * 5 + b"\xff" * 8
    reader = BitReader(data, "slice header", offset=10)

    # Execute / Assert: the message names the field and the byte offset
    with pytest.raises(BitstreamError, match=r"slice_type: .* leading zero .* byte 14"):
        reader.ue("slice_type")


def test_bitstream_error_is_a_value_error_with_a_one_line_message() -> None:
    # Execute
    with pytest.raises(ValueError) as info:
        BitReader(b"\x01", "H.264 slice header", offset=7).read_bits(12, "slice_type")

    # Assert
    assert isinstance(info.value, BitstreamError)
    message = str(info.value)
    assert "\n" not in message
    assert "slice_type" in message and "byte 7" in message


@pytest.mark.parametrize(
    ("escaped", "rbsp"),
    [
        (b"\x65\x88\x84", b"\x65\x88\x84"),  # nothing to remove
        (b"\x00\x00\x03\x01", b"\x00\x00\x01"),  # would be a start code
        (b"\x00\x00\x03\x00\x00\x03", b"\x00\x00\x00\x00"),  # two in a row
        (b"\x00\x00\x03\x03", b"\x00\x00\x03"),  # an escaped 0x03
        (b"\x00\x00\x03", b"\x00\x00"),  # cabac_zero_word at the end
        (b"\x01\x00\x03\x00", b"\x01\x00\x03\x00"),  # one zero only: a real 0x03
        (b"", b""),  # empty
    ],
)
def test_emulation_prevention_bytes_are_removed(escaped: bytes, rbsp: bytes) -> None:
    # Execute / Assert
    assert remove_emulation_prevention(escaped) == rbsp


@given(st.binary(max_size=64))
def test_emulation_prevention_round_trips(rbsp: bytes) -> None:
    # Prepare: what an encoder writes
    escaped = add_emulation_prevention(rbsp)

    # Execute / Assert: no start code survives in the escaped form, and back
    assert b"\x00\x00\x01" not in escaped and b"\x00\x00\x00" not in escaped
    assert remove_emulation_prevention(escaped) == rbsp
