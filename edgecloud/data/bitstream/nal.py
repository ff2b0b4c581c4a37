"""Length-prefixed NAL unit framing (AVCC / HVCC packets, as in MP4 and Matroska)."""

from __future__ import annotations

from collections.abc import Iterator

from edgecloud.data.bitstream.errors import BitstreamError

NAL_LENGTH_SIZES = (1, 2, 4)  # lengthSizeMinusOne = 2 is reserved in avcC / hvcC


def check_length_size(length_size: int, context: str) -> int:
    """``length_size`` if it is 1, 2 or 4 bytes, else a :class:`BitstreamError`."""
    if length_size not in NAL_LENGTH_SIZES:
        raise BitstreamError(
            f"{context}: NAL unit length size is {length_size} bytes; expected one "
            f"of {NAL_LENGTH_SIZES}"
        )
    return length_size


def iter_nal_units(
    packet: bytes, length_size: int, context: str
) -> Iterator[tuple[int, bytes]]:
    """The NAL units of a length-prefixed packet, with their byte offsets.

    Parameters
    ----------
    packet : bytes
        NAL units, each after a big-endian length of ``length_size`` bytes.
    length_size : int
        1, 2 or 4 (from the avcC / hvcC record).
    context : str
        What the packet is, for error messages (``"H.264 packet"``).

    Yields
    ------
    tuple[int, bytes]
        Offset of the NAL unit's first byte in ``packet``, and the NAL unit
        (header included). Zero-length NAL units are skipped.

    Raises
    ------
    BitstreamError
        If a length prefix is cut off or a NAL unit runs past the packet's end.
    """
    pos = 0
    size = len(packet)
    while pos < size:
        start = pos + length_size
        if start > size:
            raise BitstreamError(
                f"{context}: a {length_size}-byte NAL unit length at byte {pos} is "
                f"cut off ({size - pos} bytes left of {size})"
            )
        length = int.from_bytes(packet[pos:start], "big")
        end = start + length
        if end > size:
            raise BitstreamError(
                f"{context}: the NAL unit at byte {start} claims {length} bytes, "
                f"only {size - start} are left (packet of {size} bytes; truncated, "
                "or not length-prefixed)"
            )
        if length:
            yield start, packet[start:end]
        pos = end
