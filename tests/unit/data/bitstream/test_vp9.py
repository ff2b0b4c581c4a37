"""VP9 packets: key, inter, intra-only and show-existing frames, superframes."""

from __future__ import annotations

import pytest

from edgecloud.data.bitstream import BitstreamError, PictureInfo, Vp9Parser
from edgecloud.data.bitstream.vp9 import parse_frame_header, split_superframe
from tests.unit.data.bitstream.bitstream_utils import (
    BitWriter,
    superframe,
    vp9_inter_frame,
    vp9_intra_only_frame,
    vp9_key_frame,
    vp9_show_existing,
)


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        # key frame: intra, refreshes all 8 slots, random access
        (vp9_key_frame(), PictureInfo("I", True, True, "", True, None)),
        # key frames of the other profiles (color config differs)
        (vp9_key_frame(1), PictureInfo("I", True, True, "", True, None)),
        (vp9_key_frame(2), PictureInfo("I", True, True, "", True, None)),
        (vp9_key_frame(3), PictureInfo("I", True, True, "", True, None)),
        # inter frame refreshing LAST: a reference P
        (vp9_inter_frame(0x01), PictureInfo("P", True, False, "", True, None)),
        # inter frame refreshing nothing: droppable
        (vp9_inter_frame(0x00), PictureInfo("P", False, False, "", True, None)),
        # error resilient: no reset_frame_context bits before the flags
        (
            vp9_inter_frame(0x00, error_resilient=True),
            PictureInfo("P", False, False, "", True, None),
        ),
        # profile 3 has a reserved bit after the profile
        (
            vp9_inter_frame(0x80, profile=3),
            PictureInfo("P", True, False, "", True, None),
        ),
        # intra-only frame (hidden): I, but no random access
        (vp9_intra_only_frame(0x02), PictureInfo("I", True, False, "", False, None)),
        # intra-only in profile 1 reads a color config before the flags
        (
            vp9_intra_only_frame(0x00, profile=1),
            PictureInfo("I", False, False, "", False, None),
        ),
        # show_existing_frame: shown again, nothing decoded or refreshed
        (vp9_show_existing(3), PictureInfo("P", False, False, "", True, None)),
    ],
)
def test_frame_header_gives_the_picture(packet: bytes, expected: PictureInfo) -> None:
    # Execute / Assert
    assert Vp9Parser()(packet) == expected


def test_show_existing_frame_names_the_slot_it_shows() -> None:
    # Execute
    frame = parse_frame_header(vp9_show_existing(5))

    # Assert
    assert frame.show_existing_frame and frame.show_frame
    assert (frame.frame_to_show, frame.refresh_frame_flags) == (5, 0)


@pytest.mark.parametrize(
    ("frames", "size_bytes", "expected"),
    [
        # hidden alt-ref (refreshes slot 2) + shown inter frame refreshing none:
        # the shown frame's type, a reference through the hidden one
        (
            (vp9_inter_frame(0x04, show_frame=False), vp9_inter_frame(0x00)),
            1,
            PictureInfo("P", True, False, "", True, None),
        ),
        # 2-byte frame sizes, the shown frame is a key frame
        (
            (vp9_inter_frame(0x04, show_frame=False), vp9_key_frame()),
            2,
            PictureInfo("I", True, False, "", True, None),
        ),
        # hidden intra-only frame + show_existing_frame of another slot
        (
            (vp9_intra_only_frame(0x08), vp9_show_existing(3)),
            4,
            PictureInfo("P", True, False, "", True, None),
        ),
        # hidden frames only: nothing shown, the last frame's type
        (
            (vp9_inter_frame(0x00, show_frame=False), vp9_intra_only_frame(0x10)),
            3,
            PictureInfo("I", True, False, "", False, None),
        ),
        # a key frame first: decoding can start at this packet
        (
            (vp9_key_frame(show_frame=False), vp9_inter_frame(0x01)),
            1,
            PictureInfo("P", True, True, "", True, None),
        ),
    ],
)
def test_superframes_report_the_last_shown_frame(
    frames: tuple[bytes, ...], size_bytes: int, expected: PictureInfo
) -> None:
    # Prepare
    packet = superframe(*frames, size_bytes=size_bytes)

    # Execute
    parts = split_superframe(packet)
    info = Vp9Parser()(packet)

    # Assert
    assert [data for _, data in parts] == list(frames)
    assert info == expected


def test_a_frame_ending_in_a_marker_like_byte_is_one_frame() -> None:
    # Prepare: last byte 0xc1 (2 frames, 1-byte sizes) without a matching index
    packet = vp9_inter_frame(0x01) + b"\x00\x00\xc1"

    # Execute / Assert
    assert split_superframe(packet) == [(0, packet)]
    assert Vp9Parser()(packet).picture_type == "P"


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        # nothing at all
        (b"", "0 bytes"),
        # frame_marker 0 instead of 2
        (b"\x02" + vp9_key_frame()[1:], "frame_marker 0; expected 2"),
        # a key frame with a wrong sync code
        (vp9_key_frame()[:1] + b"\x49\x83\x43" + vp9_key_frame()[4:], "sync_code"),
        # a key frame cut inside its header
        (vp9_key_frame()[:3], "runs out reading frame_sync_code"),
        # an inter frame cut before refresh_frame_flags
        (vp9_inter_frame(0x01)[:2], "runs out reading refresh_frame_flags"),
        # profile 3 with its reserved bit set
        (BitWriter().u(2, 2).u(2, 3).u(1, 1).u(11, 0).to_bytes(), "reserved_zero"),
        # RGB color space in profile 0 is not allowed
        (
            BitWriter().u(8, 0x82).u(24, 0x498342).u(3, 7).u(29, 0).to_bytes(),
            "RGB color space in profile 0",
        ),
        # a superframe index whose sizes overrun the packet
        (superframe(b"\x86\x00", b"\x86\x00")[:-4] + b"\xc1\x09\x02\xc1", "claims 9"),
        # a superframe index with a zero-size frame
        (b"\x86\x00" + b"\xc1\x02\x00\xc1", "claims 0"),
    ],
)
def test_truncated_or_corrupt_packets_raise_with_the_reason(
    packet: bytes, message: str
) -> None:
    # Execute / Assert
    with pytest.raises(BitstreamError, match=message) as info:
        Vp9Parser()(packet)
    assert "\n" not in str(info.value) and "VP9" in str(info.value)
