"""One stream message = a few sealed frames: a control record, then tensor frames.

Over a streamed session every value travels sealed, the control values of a step
too (which step, what is wanted, is it the last): they are JSON in a ``uint8``
tensor of a frame of their own, so the receiver can read them before it opens the
tensor frames with the shapes it expects. Layout (big endian)::

    count u8 | (length u32 | sealed frame) * count

Parsed defensively: a malformed envelope is a :class:`ChannelError`, like a
tampered frame.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgecloud.channel.errors import ChannelError
from edgecloud.channel.secure_channel import FrameContext, SecureChannel

CONTROL = "control"  # tensor name of a control frame
MAX_FRAMES = 8
MAX_CONTROL_BYTES = 1 << 16
_COUNT = struct.Struct(">B")
_LENGTH = struct.Struct(">I")


def pack(frames: Sequence[bytes]) -> bytes:
    """Join sealed frames into one message."""
    if not 1 <= len(frames) <= MAX_FRAMES:
        raise ValueError(f"{len(frames)} frames; expected 1 to {MAX_FRAMES}")
    parts = [_COUNT.pack(len(frames))]
    for frame in frames:
        parts += [_LENGTH.pack(len(frame)), frame]
    return b"".join(parts)


def unpack(message: bytes) -> list[bytes]:
    """The sealed frames of a message (raises ChannelError if it is malformed)."""
    if len(message) < _COUNT.size:
        raise ChannelError("empty stream message")
    (count,) = _COUNT.unpack_from(message)
    if not 1 <= count <= MAX_FRAMES:
        raise ChannelError(
            f"stream message has {count} frames; expected 1-{MAX_FRAMES}"
        )
    frames, offset = [], _COUNT.size
    for _ in range(count):
        if offset + _LENGTH.size > len(message):
            raise ChannelError("truncated stream message")
        (length,) = _LENGTH.unpack_from(message, offset)
        offset += _LENGTH.size
        if offset + length > len(message):
            raise ChannelError("truncated stream message")
        frames.append(message[offset : offset + length])
        offset += length
    if offset != len(message):
        raise ChannelError(f"{len(message) - offset} bytes after the last frame")
    return frames


def seal_control(
    channel: SecureChannel, values: Mapping[str, Any], context: FrameContext
) -> bytes:
    """A sealed frame carrying ``values`` (JSON-serialisable scalars and dicts)."""
    data = json.dumps(dict(values), separators=(",", ":")).encode()
    if len(data) > MAX_CONTROL_BYTES:
        raise ValueError(f"control record of {len(data)} bytes; at most 64 KiB")
    return channel.seal({CONTROL: np.frombuffer(data, dtype=np.uint8)}, context)


def open_control(
    channel: SecureChannel, frame: bytes, context: FrameContext
) -> dict[str, Any]:
    """The values of a sealed control frame (raises ChannelError if unusable)."""
    data = channel.open(frame, context, {CONTROL: None})[CONTROL]
    if data.dtype != np.uint8 or data.ndim != 1 or data.size > MAX_CONTROL_BYTES:
        raise ChannelError(f"control frame holds {data.dtype} {data.shape}")
    try:
        values = json.loads(data.tobytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ChannelError(f"control frame is not JSON: {err}") from None
    if not isinstance(values, dict):
        raise ChannelError("control frame does not hold a JSON object")
    return values
