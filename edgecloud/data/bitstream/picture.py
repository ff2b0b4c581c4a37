"""What a packet's headers say about its picture: type, reference, random access."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PictureType = Literal["I", "P", "B"]
LeadingKind = Literal["", "RADL", "RASL"]


@dataclass(frozen=True)
class PictureInfo:
    """One packet's picture as its headers describe it, without decoding.

    Parameters
    ----------
    picture_type : {"I", "P", "B"}
        The slice type of the picture's first slice (H.264 SP maps to P, SI to I);
        for VP9, I for key frames and intra-only frames, P otherwise. This is what
        FFmpeg's decoders report as ``frame.pict_type``.
    reference : bool
        Whether later pictures may predict from this one: H.264 ``nal_ref_idc != 0``;
        H.265 not a sub-layer non-reference NAL type (``*_N``); VP9 refreshes at
        least one reference slot. Dropping a non-reference packet harms no other
        picture.
    random_access : bool
        Decoding can start here: H.264 IDR, H.265 IRAP (BLA, IDR, CRA), VP9 key
        frame. After a CRA the RASL pictures (``leading == "RASL"``) are not
        decodable when decoding starts at that CRA.
    leading : {"", "RADL", "RASL"}
        H.265 leading pictures (displayed before, decoded after their IRAP):
        RADL ones only reference the IRAP and later pictures; RASL ones also
        reference the previous GOP (open GOP). Always ``""`` for H.264 and VP9.
    shown : bool
        Whether the packet yields a displayed picture (false only for a VP9 packet
        of hidden frames, e.g. an alt-ref frame outside a superframe).
    nal_unit_type : int | None
        The picture's NAL unit type (H.264 and H.265); ``None`` for VP9.
    """

    picture_type: PictureType
    reference: bool
    random_access: bool
    leading: LeadingKind
    shown: bool
    nal_unit_type: int | None
