"""Stream messages: sealed control + tensor frames, parsed defensively."""

from __future__ import annotations

import numpy as np
import pytest

from edgecloud.channel import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    ChannelError,
    FrameContext,
    Handshake,
    SecureChannel,
)
from edgecloud.channel.envelope import open_control, pack, seal_control, unpack

WHERE = FrameContext(1, 7, "train.split_session", 2, 3)


def _pair() -> tuple[SecureChannel, SecureChannel]:
    server, client = Handshake(), Handshake()
    server_keys = server.derive(
        client.public_bytes, is_server=True, run_id=1, node_id=7, binding=b"t" * 32
    )
    client_keys = client.derive(
        server.public_bytes, is_server=False, run_id=1, node_id=7, binding=b"t" * 32
    )
    return (
        SecureChannel(server_keys, send_direction=SERVER_TO_CLIENT),
        SecureChannel(client_keys, send_direction=CLIENT_TO_SERVER),
    )


def test_control_and_tensor_frames_round_trip_in_order() -> None:
    # Prepare
    sender, receiver = _pair()
    grad = np.arange(6, dtype=np.float32).reshape(2, 3)

    # Execute
    message = pack(
        [
            seal_control(sender, {"grad-step": 4, "final": True}, WHERE),
            sender.seal({"grad": grad}, WHERE),
        ]
    )
    control_frame, tensor_frame = unpack(message)

    # Assert
    assert open_control(receiver, control_frame, WHERE) == {
        "grad-step": 4,
        "final": True,
    }
    np.testing.assert_array_equal(
        receiver.open(tensor_frame, WHERE, {"grad": (2, 3)})["grad"], grad
    )


def test_keys_bound_to_another_token_do_not_open_frames() -> None:
    server, client = Handshake(), Handshake()
    keys = server.derive(client.public_bytes, is_server=True, run_id=1, node_id=7)
    other = client.derive(
        server.public_bytes, is_server=False, run_id=1, node_id=7, binding=b"x"
    )
    frame = seal_control(
        SecureChannel(keys, send_direction=SERVER_TO_CLIENT), {}, WHERE
    )
    with pytest.raises(ChannelError, match="authentication failed"):
        open_control(
            SecureChannel(other, send_direction=CLIENT_TO_SERVER), frame, WHERE
        )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        # nothing at all
        (b"", "empty"),
        # zero frames announced
        (b"\x00", "0 frames"),
        # more frames than any protocol sends
        (b"\x09" + b"\x00" * 40, "9 frames"),
        # a length running past the end
        (b"\x01\x00\x00\x00\x10abc", "truncated"),
        # bytes after the last frame
        (b"\x01\x00\x00\x00\x01ax", "after the last frame"),
    ],
)
def test_malformed_messages_are_channel_errors(message: bytes, reason: str) -> None:
    with pytest.raises(ChannelError, match=reason):
        unpack(message)


def test_a_control_frame_that_is_not_a_json_object_is_rejected() -> None:
    sender, receiver = _pair()
    frame = sender.seal({"control": np.frombuffer(b"[1, 2]", np.uint8)}, WHERE)
    with pytest.raises(ChannelError, match="JSON object"):
        open_control(receiver, frame, WHERE)
    sender, receiver = _pair()
    frame = sender.seal({"control": np.frombuffer(b"\xff\xfe", np.uint8)}, WHERE)
    with pytest.raises(ChannelError, match="not JSON"):
        open_control(receiver, frame, WHERE)
