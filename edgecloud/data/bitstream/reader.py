"""A bit reader over RBSP bytes, and RBSP extraction from NAL unit payloads.

Fixed-width fields, flags and Exp-Golomb codes, most significant bit first; the
RBSP is a NAL unit payload without its emulation-prevention bytes.
"""

from __future__ import annotations

from edgecloud.data.bitstream.errors import BitstreamError

# A ue(v) code never has more leading zeros than this in H.264 / H.265 syntax
# (the largest values, e.g. 2**32 - 1, need 32); more means corrupt data.
MAX_EXP_GOLOMB_ZEROS = 32
_EMULATION_PREVENTION = b"\x00\x00\x03"


def remove_emulation_prevention(payload: bytes) -> bytes:
    """The RBSP of a NAL unit payload: every ``0x000003`` becomes ``0x0000``.

    Encoders insert the ``0x03`` so that no start code (``0x000001``) appears
    inside a NAL unit; the syntax is defined on the bytes without it.

    Parameters
    ----------
    payload : bytes
        NAL unit bytes (header included or not: the header never holds ``0x0000``).

    Returns
    -------
    bytes
        The payload without its emulation-prevention bytes.
    """
    start = payload.find(_EMULATION_PREVENTION)
    if start < 0:
        return payload  # the usual case: nothing to copy
    parts = []
    begin = 0
    while start >= 0:
        parts.append(payload[begin : start + 2])
        begin = start + 3
        # the next sequence may not reuse the two zeros just kept
        start = payload.find(_EMULATION_PREVENTION, begin)
    parts.append(payload[begin:])
    return b"".join(parts)


class BitReader:
    """Read big-endian bit fields and Exp-Golomb codes, most significant bit first.

    Parameters
    ----------
    data : bytes
        The bytes to read (an RBSP, or a VP9 frame header).
    context : str
        What the bytes are, for error messages (``"H.264 slice header"``).
    offset : int
        Where ``data`` starts in the enclosing packet or extradata, so that error
        messages give the byte offset there.

    Raises
    ------
    BitstreamError
        From every read that would run past the end of ``data``.
    """

    def __init__(
        self, data: bytes, context: str = "bitstream", offset: int = 0
    ) -> None:
        self._data = data
        self._size = len(data) * 8
        self._pos = 0
        self.context = context
        self.offset = offset

    @property
    def bit_position(self) -> int:
        """Bits read so far."""
        return self._pos

    @property
    def bits_left(self) -> int:
        """Bits not read yet."""
        return self._size - self._pos

    def error(self, problem: str) -> BitstreamError:
        """A :class:`BitstreamError` for ``problem`` at the current byte offset."""
        byte = self.offset + (self._pos >> 3)
        return BitstreamError(f"{self.context}: {problem} at byte {byte}")

    def _ran_out(self, what: str, wanted: int) -> BitstreamError:
        return self.error(
            f"data runs out reading {what} ({wanted} bits wanted, "
            f"{self.bits_left} left of {len(self._data)} bytes)"
        )

    def read_bits(self, n: int, what: str = "bits") -> int:
        """The next ``n`` bits (``n >= 0``) as an unsigned integer.

        ``what`` names the field in error messages (so do the other reads').
        """
        if n < 0:
            raise ValueError(f"read_bits got n={n}; expected n >= 0")
        end = self._pos + n
        if end > self._size:
            raise self._ran_out(what, n)
        if n == 0:
            return 0
        first, last = self._pos >> 3, (end + 7) >> 3
        chunk = int.from_bytes(self._data[first:last], "big")
        self._pos = end
        return (chunk >> ((last << 3) - end)) & ((1 << n) - 1)

    def read_flag(self, what: str = "flag") -> bool:
        """The next bit as a bool."""
        if self._pos >= self._size:
            raise self._ran_out(what, 1)
        bit = (self._data[self._pos >> 3] >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return bool(bit)

    def skip_bits(self, n: int, what: str = "bits") -> None:
        """Skip ``n`` bits (checked like a read)."""
        if n < 0 or self._pos + n > self._size:
            raise self._ran_out(what, n)
        self._pos += n

    def ue(self, what: str = "ue(v)") -> int:
        """An unsigned Exp-Golomb code ``ue(v)``: ``2**zeros - 1 + next zeros bits``."""
        zeros = 0
        while not self.read_flag(what):
            zeros += 1
            if zeros > MAX_EXP_GOLOMB_ZEROS:
                raise self.error(
                    f"{what}: an Exp-Golomb code with more than "
                    f"{MAX_EXP_GOLOMB_ZEROS} leading zero bits (corrupt data)"
                )
        return (1 << zeros) - 1 + self.read_bits(zeros, what)

    def se(self, what: str = "se(v)") -> int:
        """A signed Exp-Golomb code ``se(v)``: ue 0, 1, 2, 3, 4 mean 0, 1, -1, 2, -2."""
        code = self.ue(what)
        return (code + 1) >> 1 if code & 1 else -(code >> 1)
