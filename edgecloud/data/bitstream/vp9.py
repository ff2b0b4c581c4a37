"""VP9 frame type, reference flag and visibility from packets, without decoding.

Reads the start of each frame's uncompressed header (VP9 bitstream spec 6.2) up
to ``refresh_frame_flags``, and splits superframes (spec Annex B: several frames
in one packet, an index at its end). VP9 needs no extradata.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecloud.data.bitstream.errors import BitstreamError
from edgecloud.data.bitstream.picture import PictureInfo
from edgecloud.data.bitstream.reader import BitReader

FRAME_MARKER = 2
SYNC_CODE = 0x498342
KEY_FRAME = 0
CS_RGB = 7
_SUPERFRAME_MARKER = 0xC0  # 0b110xxxxx
_ALL_SLOTS = 0xFF


@dataclass(frozen=True)
class Vp9Frame:
    """What one frame's uncompressed header says.

    ``refresh_frame_flags`` is the bit mask of the 8 reference slots it
    overwrites; a ``show_existing_frame`` header only shows slot
    ``frame_to_show`` again (nothing decoded, nothing refreshed).
    """

    show_existing_frame: bool
    key_frame: bool
    intra_only: bool
    show_frame: bool
    refresh_frame_flags: int
    frame_to_show: int | None = None

    @property
    def intra(self) -> bool:
        """Key frame or intra-only frame: no prediction from other frames."""
        return self.key_frame or self.intra_only


def split_superframe(packet: bytes) -> list[tuple[int, bytes]]:
    """The frames of a packet (one, or several for a superframe), with offsets.

    A superframe ends in an index: a marker byte ``0b110sssnnn`` (``sss + 1``
    bytes per frame size, ``nnn + 1`` frames), the little-endian frame sizes,
    and the marker byte again. A packet whose last byte does not start such an
    index is one frame.

    Raises
    ------
    BitstreamError
        If the packet is empty or the index's sizes overrun the packet.
    """
    if not packet:
        raise BitstreamError("VP9 packet of 0 bytes: no frame header to read")
    marker = packet[-1]
    if marker & 0xE0 != _SUPERFRAME_MARKER:
        return [(0, packet)]
    size_bytes = ((marker >> 3) & 0x03) + 1
    count = (marker & 0x07) + 1
    index_size = 2 + size_bytes * count
    if index_size > len(packet) or packet[-index_size] != marker:
        return [(0, packet)]  # a frame that merely ends in a marker-like byte
    data_end = len(packet) - index_size
    frames = []
    pos = 0
    entry = data_end + 1
    for i in range(count):
        size = int.from_bytes(packet[entry : entry + size_bytes], "little")
        entry += size_bytes
        if size == 0 or pos + size > data_end:
            raise BitstreamError(
                f"VP9 superframe of {len(packet)} bytes: frame {i} of {count} at "
                f"byte {pos} claims {size} bytes, {data_end - pos} are left before "
                "the index"
            )
        frames.append((pos, packet[pos : pos + size]))
        pos += size
    return frames


def _read_sync_code(reader: BitReader) -> None:
    code = reader.read_bits(24, "frame_sync_code")
    if code != SYNC_CODE:
        raise reader.error(f"frame_sync_code 0x{code:06x}; expected 0x498342")


def _read_color_config(reader: BitReader, profile: int) -> None:
    if profile >= 2:
        reader.read_flag("ten_or_twelve_bit")
    color_space = reader.read_bits(3, "color_space")
    if color_space != CS_RGB:
        reader.read_flag("color_range")
        if profile in (1, 3):
            reader.read_bits(2, "subsampling_x, subsampling_y")
            if reader.read_flag("reserved_zero"):
                raise reader.error("color_config reserved_zero bit set")
    elif profile in (1, 3):
        if reader.read_flag("reserved_zero"):
            raise reader.error("color_config reserved_zero bit set")
    else:
        raise reader.error(f"RGB color space in profile {profile} (1 or 3 only)")


def parse_frame_header(frame: bytes, offset: int = 0) -> Vp9Frame:
    """Read one frame's uncompressed header up to ``refresh_frame_flags``.

    Key frames are read through ``frame_size`` too (the sync code and sizes
    catch data that is not VP9).

    Parameters
    ----------
    frame : bytes
        One frame (a whole packet, or one frame of a superframe).
    offset : int
        Where the frame lies in its packet (for error messages).
    """
    reader = BitReader(frame, f"VP9 frame header of {len(frame)} bytes", offset)
    marker = reader.read_bits(2, "frame_marker")
    if marker != FRAME_MARKER:
        raise reader.error(f"frame_marker {marker}; expected 2")
    profile = reader.read_bits(1, "profile_low_bit")
    profile |= reader.read_bits(1, "profile_high_bit") << 1
    if profile == 3 and reader.read_flag("reserved_zero"):
        raise reader.error("reserved_zero bit after profile 3 set")
    if reader.read_flag("show_existing_frame"):
        slot = reader.read_bits(3, "frame_to_show_map_idx")
        return Vp9Frame(True, False, False, True, 0, slot)
    key_frame = reader.read_bits(1, "frame_type") == KEY_FRAME
    show_frame = reader.read_flag("show_frame")
    error_resilient = reader.read_flag("error_resilient_mode")
    if key_frame:
        _read_sync_code(reader)
        _read_color_config(reader, profile)
        reader.read_bits(32, "frame_width_minus_1, frame_height_minus_1")
        return Vp9Frame(False, True, True, show_frame, _ALL_SLOTS)
    intra_only = False if show_frame else reader.read_flag("intra_only")
    if not error_resilient:
        reader.read_bits(2, "reset_frame_context")
    if intra_only:
        _read_sync_code(reader)
        if profile > 0:
            _read_color_config(reader, profile)
    refresh = reader.read_bits(8, "refresh_frame_flags")
    return Vp9Frame(False, False, intra_only, show_frame, refresh)


class Vp9Parser:
    """Parse VP9 packets (one frame or a superframe) into :class:`PictureInfo`.

    Rules for a packet of several frames (a superframe: typically a hidden
    alt-ref frame followed by a shown frame): the picture type comes from the
    last shown frame (the one a decoder outputs; the last frame if none is
    shown); ``reference`` is true if any frame refreshes a reference slot;
    ``random_access`` if the first frame is a key frame; ``shown`` if any frame
    is shown. A ``show_existing_frame`` header repeats an earlier frame without
    decoding: P (its type is that of the repeated frame, which a parser without
    state does not know; FFmpeg reports that one's), not a reference.

    Parameters
    ----------
    extradata : bytes | None
        Ignored (VP9 streams need none; WebM may carry codec features there).
    """

    def __init__(self, extradata: bytes | None = None) -> None:
        del extradata

    def __call__(self, packet: bytes) -> PictureInfo:
        """The picture of one packet.

        Raises
        ------
        BitstreamError
            If a frame header is truncated or corrupt, or a superframe index is.
        """
        frames = [
            parse_frame_header(data, pos) for pos, data in split_superframe(packet)
        ]
        shown = [f for f in frames if f.show_frame]
        main = shown[-1] if shown else frames[-1]
        return PictureInfo(
            picture_type="I" if main.intra else "P",
            reference=any(f.refresh_frame_flags for f in frames),
            random_access=frames[0].key_frame,
            leading="",
            shown=bool(shown),
            nal_unit_type=None,
        )
