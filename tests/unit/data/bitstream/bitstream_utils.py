"""Hand-built bitstreams for the parser tests: a bit writer and NAL/VP9 builders."""

from __future__ import annotations


class BitWriter:
    """Append fields most significant bit first; ``rbsp()`` adds stop bit + padding."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> BitWriter:
        assert 0 <= value < (1 << n) or n == value == 0
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))
        return self

    def flag(self, value: bool | int) -> BitWriter:
        return self.u(1, int(bool(value)))

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        width = code.bit_length()
        return self.u(width - 1, 0).u(width, code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def to_bytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(
            int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8)
        )

    def rbsp(self) -> bytes:
        """rbsp_trailing_bits: a stop bit, then zeros to the byte boundary."""
        self.bits.append(1)
        return self.to_bytes()


def add_emulation_prevention(rbsp: bytes) -> bytes:
    """What an encoder writes: ``0x03`` after two zeros before any byte <= 3."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def length_prefixed(*nals: bytes, size: int = 4) -> bytes:
    """An AVCC / HVCC packet: each NAL unit after its big-endian length."""
    return b"".join(len(nal).to_bytes(size, "big") + nal for nal in nals)


# --- H.264 -----------------------------------------------------------------------

H264_SPS = bytes.fromhex("6764000dacd942847e58")  # a real x264 SPS (not parsed)
H264_PPS = bytes.fromhex("68efbcb0")


def avcc(length_size: int = 4, sps: bytes = H264_SPS, pps: bytes = H264_PPS) -> bytes:
    """An avcC record with one SPS and one PPS."""
    return (
        bytes([1, sps[1], sps[2], sps[3], 0xFC | (length_size - 1), 0xE1])
        + len(sps).to_bytes(2, "big")
        + sps
        + b"\x01"
        + len(pps).to_bytes(2, "big")
        + pps
    )


def h264_nal(nal_ref_idc: int, nal_type: int, rbsp: bytes) -> bytes:
    return bytes([(nal_ref_idc << 5) | nal_type]) + add_emulation_prevention(rbsp)


def h264_slice(
    nal_ref_idc: int, nal_type: int, slice_type: int, first_mb: int = 0
) -> bytes:
    """A slice NAL unit: header, first_mb_in_slice, slice_type, pps id, then bits."""
    bits = BitWriter().ue(first_mb).ue(slice_type).ue(0).u(8, 0xA5)
    return h264_nal(nal_ref_idc, nal_type, bits.rbsp())


# --- H.265 -----------------------------------------------------------------------


def h265_header(nal_type: int, layer_id: int = 0, temporal_id_plus1: int = 1) -> bytes:
    first = (nal_type << 1) | (layer_id >> 5)
    return bytes([first, ((layer_id & 0x1F) << 3) | temporal_id_plus1])


def h265_pps(
    pps_id: int = 0,
    sps_id: int = 0,
    dependent_slices: bool = False,
    output_flag: bool = False,
    extra_bits: int = 0,
) -> bytes:
    """A PPS NAL unit: its first five fields, then arbitrary further bits."""
    bits = BitWriter().ue(pps_id).ue(sps_id).flag(dependent_slices).flag(output_flag)
    bits.u(3, extra_bits).u(16, 0x5A5A)
    return h265_header(34) + add_emulation_prevention(bits.rbsp())


def hvcc(*arrays: tuple[int, list[bytes]], length_size: int = 4) -> bytes:
    """An hvcC record: 23 header bytes, then (NAL type, NAL units) arrays."""
    header = bytearray(23)
    header[0] = 1
    header[21] = 0x0C | (length_size - 1)
    header[22] = len(arrays)
    body = bytearray()
    for nal_type, nals in arrays:
        body += bytes([0x80 | nal_type]) + len(nals).to_bytes(2, "big")
        for nal in nals:
            body += len(nal).to_bytes(2, "big") + nal
    return bytes(header + body)


H265_VPS = h265_header(32) + bytes.fromhex("0c01ffff016000000300")
H265_SPS = h265_header(33) + bytes.fromhex("0101600000030090000003")


def default_hvcc(*pps: bytes, length_size: int = 4) -> bytes:
    return hvcc(
        (32, [H265_VPS]),
        (33, [H265_SPS]),
        (34, list(pps) or [h265_pps()]),
        length_size=length_size,
    )


def h265_slice(
    nal_type: int,
    slice_type: int,
    pps_id: int = 0,
    first_in_pic: bool = True,
    extra_bits: int = 0,
    layer_id: int = 0,
) -> bytes:
    """A slice segment NAL unit up to slice_type, then arbitrary bits."""
    bits = BitWriter().flag(first_in_pic)
    if 16 <= nal_type <= 23:
        bits.flag(0)  # no_output_of_prior_pics_flag
    bits.ue(pps_id)
    if not first_in_pic:
        bits.u(7, 0x55)  # slice_segment_address (any width: skipped anyway)
    bits.u(extra_bits, (1 << extra_bits) - 1).ue(slice_type).u(8, 0xC3)
    return h265_header(nal_type, layer_id) + add_emulation_prevention(bits.rbsp())


# --- VP9 -------------------------------------------------------------------------


def vp9_profile(bits: BitWriter, profile: int) -> BitWriter:
    bits.u(2, 2).u(1, profile & 1).u(1, profile >> 1)
    if profile == 3:
        bits.u(1, 0)
    return bits


def vp9_key_frame(profile: int = 0, show_frame: bool = True) -> bytes:
    bits = vp9_profile(BitWriter(), profile).flag(0).u(1, 0).flag(show_frame).flag(0)
    bits.u(24, 0x498342)
    if profile >= 2:
        bits.flag(0)  # ten_or_twelve_bit
    bits.u(3, 1).flag(0)  # color_space BT.601, color_range
    if profile in (1, 3):
        bits.u(3, 0)  # subsampling_x, subsampling_y, reserved_zero
    bits.u(16, 159).u(16, 119)  # frame size 160x120
    bits.flag(0)  # render_and_frame_size_different
    return bits.to_bytes() + b"\x11" * 8


def vp9_inter_frame(
    refresh: int,
    show_frame: bool = True,
    error_resilient: bool = False,
    profile: int = 0,
) -> bytes:
    bits = vp9_profile(BitWriter(), profile).flag(0).u(1, 1).flag(show_frame)
    bits.flag(error_resilient)
    if not show_frame:
        bits.flag(0)  # intra_only
    if not error_resilient:
        bits.u(2, 0)  # reset_frame_context
    bits.u(8, refresh).u(24, 0x123456)  # refresh_frame_flags, then ref indices...
    return bits.to_bytes() + b"\x22" * 8


def vp9_intra_only_frame(refresh: int, profile: int = 0) -> bytes:
    bits = vp9_profile(BitWriter(), profile).flag(0).u(1, 1).flag(0).flag(0)
    bits.flag(1).u(2, 0).u(24, 0x498342)  # intra_only, reset_frame_context, sync
    if profile > 0:
        if profile >= 2:
            bits.flag(0)
        bits.u(3, 2).flag(1)  # color_space, color_range
        if profile in (1, 3):
            bits.u(3, 0)
    bits.u(8, refresh).u(32, 0x009F0077)
    return bits.to_bytes() + b"\x33" * 4


def vp9_show_existing(slot: int) -> bytes:
    return vp9_profile(BitWriter(), 0).flag(1).u(3, slot).to_bytes()


def superframe(*frames: bytes, size_bytes: int = 1) -> bytes:
    marker = 0xC0 | ((size_bytes - 1) << 3) | (len(frames) - 1)
    index = bytes([marker])
    for frame in frames:
        index += len(frame).to_bytes(size_bytes, "little")
    return b"".join(frames) + index + bytes([marker])
