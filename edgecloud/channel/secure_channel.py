"""AES-256-GCM frames of named tensors, bound to run, node, message, round and step.

Frame layout (big endian)::

    magic "EC" | version u8 | flags u8 | direction u8 | counter u64
    | header_len u32 | header (JSON: tensor descriptions, byte lengths)
    | body | tag (16 B, encrypted only)

The nonce is ``direction (4 B) || counter (8 B)``: with one key per direction and a
counter that only moves forward, a nonce is never used twice under one key. The
associated data is the frame prefix, the header and the :class:`FrameContext`
(which is not sent: both sides know it), so a frame moved to another run, node,
message type, round or step fails authentication like a tampered one. Frames must
arrive in counter order: an old counter is a replay, a higher one a reordering.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from Crypto.Cipher import AES

from edgecloud.channel.codecs import ErrorFeedback, decode_tensor, encode_tensor
from edgecloud.channel.errors import ChannelError
from edgecloud.channel.key_agreement import SessionKeys

SERVER_TO_CLIENT = 1
CLIENT_TO_SERVER = 2
_MAGIC = b"EC"
_VERSION = 1
_FLAG_ENCRYPTED = 0x01
_PREFIX = struct.Struct(">2sBBBQI")
_TAG_BYTES = 16
_MAX_HEADER = 1 << 16


@dataclass(frozen=True)
class FrameContext:
    """Where a frame belongs; authenticated as associated data, never sent."""

    run_id: int
    node_id: int
    message_type: str
    server_round: int
    step: int

    def associated_data(self) -> bytes:
        """Canonical bytes of the context."""
        return (
            f"run={self.run_id}|node={self.node_id}|type={self.message_type}|"
            f"round={self.server_round}|step={self.step}"
        ).encode()


class SecureChannel:
    """One side of a protected channel (state: two counters).

    Parameters
    ----------
    keys : SessionKeys or None
        AES-256-GCM keys; ``None`` switches encryption off (``channel-encryption=
        false``, for measuring its cost): frames are then neither secret nor
        authenticated, only counted.
    send_direction : int
        :data:`SERVER_TO_CLIENT` on the server, :data:`CLIENT_TO_SERVER` on a client.
    send_counter, recv_counter : int
        Restored counters (the client keeps them in ``context.state``).
    """

    def __init__(
        self,
        keys: SessionKeys | None,
        *,
        send_direction: int,
        send_counter: int = 0,
        recv_counter: int = 0,
    ) -> None:
        if send_direction not in (SERVER_TO_CLIENT, CLIENT_TO_SERVER):
            raise ValueError(f"send_direction is {send_direction}; expected 1 or 2")
        self.keys = keys
        self.send_direction = send_direction
        self.recv_direction = 3 - send_direction
        self.send_counter = send_counter
        self.recv_counter = recv_counter

    @property
    def encrypted(self) -> bool:
        """Whether frames are encrypted and authenticated."""
        return self.keys is not None

    def seal(
        self,
        tensors: Mapping[str, npt.NDArray[Any]],
        context: FrameContext,
        codec: str = "fp32",
        error_feedback: ErrorFeedback | None = None,
    ) -> bytes:
        """Encode ``tensors`` with ``codec`` and seal them into one frame."""
        metas, chunks = [], []
        for name, array in tensors.items():
            values = array
            if error_feedback is not None and array.dtype == np.float32:
                values = error_feedback.compensate(name, array)
            meta, data = encode_tensor(name, values, codec)
            if error_feedback is not None and array.dtype == np.float32:
                error_feedback.update(name, values, decode_tensor(meta, data))
            metas.append(meta)
            chunks.append(data)
        header = json.dumps(
            {"tensors": metas, "lengths": [len(c) for c in chunks]},
            separators=(",", ":"),
        ).encode()
        payload = b"".join(chunks)
        flags = _FLAG_ENCRYPTED if self.encrypted else 0
        prefix = _PREFIX.pack(
            _MAGIC, _VERSION, flags, self.send_direction, self.send_counter, len(header)
        )
        if self.keys is None:
            frame = prefix + header + payload
        else:
            cipher = AES.new(
                self.keys.send_key,
                AES.MODE_GCM,
                nonce=_nonce(self.send_direction, self.send_counter),
            )
            cipher.update(prefix + header + context.associated_data())
            body, tag = cipher.encrypt_and_digest(payload)
            frame = prefix + header + body + tag
        self.send_counter += 1
        return frame

    def open(
        self,
        frame: bytes,
        context: FrameContext,
        expected_shapes: Mapping[str, tuple[int, ...] | None] | None = None,
    ) -> dict[str, npt.NDArray[Any]]:
        """Authenticate, then decode a frame; counters move only on success.

        Parameters
        ----------
        frame : bytes
            What the peer's :meth:`seal` produced.
        context : FrameContext
            Where the frame is expected to belong.
        expected_shapes : Mapping, optional
            Tensor names that must be present (exactly), with their shapes
            (``None`` = any shape).

        Raises
        ------
        ChannelError
            For anything but an authentic, in-order frame of the expected shapes.
        """
        if not isinstance(frame, bytes | bytearray):
            raise ChannelError(f"frame is a {type(frame).__name__}; expected bytes")
        frame = bytes(frame)
        minimum = _PREFIX.size + (_TAG_BYTES if self.encrypted else 0)
        if len(frame) < minimum:
            raise ChannelError(
                f"truncated frame: {len(frame)} bytes, need >= {minimum}"
            )
        magic, version, flags, direction, counter, header_len = _PREFIX.unpack_from(
            frame
        )
        if magic != _MAGIC or version != _VERSION:
            raise ChannelError(
                f"not a channel frame (magic {magic!r}, version {version})"
            )
        if bool(flags & _FLAG_ENCRYPTED) != self.encrypted or flags & ~_FLAG_ENCRYPTED:
            raise ChannelError(f"frame flags {flags:#x} do not match this channel")
        if direction != self.recv_direction:
            raise ChannelError(
                f"frame travels in direction {direction}; expected "
                f"{self.recv_direction}"
            )
        if counter != self.recv_counter:
            kind = "replayed" if counter < self.recv_counter else "reordered"
            raise ChannelError(
                f"{kind} frame: counter {counter}, expected {self.recv_counter}"
            )
        body_start = _PREFIX.size + header_len
        if header_len > _MAX_HEADER or body_start > len(frame) - (
            minimum - _PREFIX.size
        ):
            raise ChannelError(f"header length {header_len} exceeds the frame")
        header = frame[_PREFIX.size : body_start]
        if self.keys is None:
            payload = frame[body_start:]
        else:
            cipher = AES.new(
                self.keys.recv_key, AES.MODE_GCM, nonce=_nonce(direction, counter)
            )
            cipher.update(frame[:body_start] + context.associated_data())
            try:
                payload = cipher.decrypt_and_verify(
                    frame[body_start:-_TAG_BYTES], frame[-_TAG_BYTES:]
                )
            except ValueError as err:
                raise ChannelError(
                    "authentication failed: tampered frame, wrong key or wrong context"
                ) from err
        tensors = _parse(header, payload)
        if expected_shapes is not None:
            _check_expected(tensors, expected_shapes)
        self.recv_counter += 1
        return tensors


def _nonce(direction: int, counter: int) -> bytes:
    return direction.to_bytes(4, "big") + counter.to_bytes(8, "big")


def _parse(header: bytes, payload: bytes) -> dict[str, npt.NDArray[Any]]:
    try:
        described = json.loads(header.decode("utf-8"))
        metas, lengths = described["tensors"], described["lengths"]
        if not (isinstance(metas, list) and isinstance(lengths, list)):
            raise TypeError("tensors and lengths must be lists")
        if len(metas) != len(lengths) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths
        ):
            raise ValueError("one non-negative integer length per tensor")
        names = [str(m["name"]) for m in metas]
    except (UnicodeDecodeError, ValueError, TypeError, KeyError) as err:
        raise ChannelError(f"malformed frame header: {err}") from err
    if len(set(names)) != len(names):
        raise ChannelError(f"duplicate tensor names {names}")
    if sum(lengths) != len(payload):
        raise ChannelError(
            f"payload is {len(payload)} bytes; header says {sum(lengths)}"
        )
    tensors, offset = {}, 0
    for name, meta, length in zip(names, metas, lengths, strict=True):
        if not isinstance(meta, dict):
            raise ChannelError("tensor description must be an object")
        tensors[name] = decode_tensor(meta, payload[offset : offset + length])
        offset += length
    return tensors


def _check_expected(
    tensors: Mapping[str, npt.NDArray[Any]],
    expected: Mapping[str, tuple[int, ...] | None],
) -> None:
    if set(tensors) != set(expected):
        raise ChannelError(
            f"frame holds tensors {sorted(tensors)}; expected {sorted(expected)}"
        )
    for name, shape in expected.items():
        if shape is not None and tuple(tensors[name].shape) != tuple(shape):
            raise ChannelError(
                f"tensor {name!r} has shape {tuple(tensors[name].shape)}; "
                f"expected {shape}"
            )
