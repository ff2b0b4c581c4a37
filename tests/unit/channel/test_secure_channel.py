"""Protected channel: key agreement, sealed frames, codecs and every rejection path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgecloud.channel import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    ChannelError,
    ErrorFeedback,
    FrameContext,
    Handshake,
    SecureChannel,
    SessionKeys,
)

CTX = FrameContext(
    run_id=5, node_id=9, message_type="train.split_step", server_round=2, step=3
)
rng = np.random.default_rng(0)
ACTIVATIONS = rng.normal(size=(16, 512)).astype(np.float32)
LABELS = rng.integers(0, 10, size=16).astype(np.int64)


def _pair() -> tuple[SecureChannel, SecureChannel]:
    server, client = Handshake(), Handshake()
    server_keys = server.derive(
        client.public_bytes, is_server=True, run_id=5, node_id=9
    )
    client_keys = client.derive(
        server.public_bytes, is_server=False, run_id=5, node_id=9
    )
    return (
        SecureChannel(server_keys, send_direction=SERVER_TO_CLIENT),
        SecureChannel(client_keys, send_direction=CLIENT_TO_SERVER),
    )


def _counters(channel: SecureChannel) -> tuple[int, int]:
    return channel.send_counter, channel.recv_counter


def test_handshake_gives_matching_keys_per_direction() -> None:
    # Prepare
    server, client = Handshake(), Handshake()

    # Execute
    s = server.derive(client.public_bytes, is_server=True, run_id=1, node_id=2)
    c = client.derive(server.public_bytes, is_server=False, run_id=1, node_id=2)
    other_node = client.derive(
        server.public_bytes, is_server=False, run_id=1, node_id=3
    )

    # Assert
    assert s.send_key == c.recv_key and s.recv_key == c.send_key
    assert s.send_key != s.recv_key and len(s.send_key) == 32
    assert other_node.send_key != c.send_key  # keys are bound to the node


@pytest.mark.parametrize("peer", [b"", b"\x00" * 44, b"not a key"])
def test_malformed_peer_key_is_rejected(peer: bytes) -> None:
    with pytest.raises(ChannelError):
        Handshake().derive(peer, is_server=True, run_id=1, node_id=1)


def test_fp32_round_trip_is_exact_and_ciphertext_hides_the_values() -> None:
    # Prepare
    server, client = _pair()

    # Execute
    frame = client.seal({"activations": ACTIVATIONS, "labels": LABELS}, CTX)
    opened = server.open(frame, CTX, {"activations": (16, 512), "labels": (16,)})

    # Assert
    np.testing.assert_array_equal(opened["activations"], ACTIVATIONS)
    np.testing.assert_array_equal(opened["labels"], LABELS)
    assert ACTIVATIONS.tobytes()[:64] not in frame and LABELS.tobytes() not in frame
    assert _counters(client) == (1, 0) and _counters(server) == (0, 1)


@pytest.mark.parametrize(
    ("codec", "max_error", "max_bytes"),
    [
        ("fp16", 2e-3, 2 * ACTIVATIONS.size + 400),
        ("bf16", 2e-2, 2 * ACTIVATIONS.size + 400),
        ("int8", 0.05, ACTIVATIONS.size + 4 * 16 + 400),  # one scale per sample
    ],
)
def test_lossy_codecs_shrink_frames_within_error_bounds(
    codec: str, max_error: float, max_bytes: int
) -> None:
    # Prepare
    server, client = _pair()

    # Execute
    frame = client.seal(
        {"activations": ACTIVATIONS, "labels": LABELS}, CTX, codec=codec
    )
    opened = server.open(frame, CTX)

    # Assert: labels are never compressed
    np.testing.assert_array_equal(opened["labels"], LABELS)
    assert np.abs(opened["activations"] - ACTIVATIONS).max() < max_error * 4
    assert len(frame) <= max_bytes + LABELS.nbytes


def test_error_feedback_keeps_accumulated_error_bounded() -> None:
    # Prepare: the same gradient sent 50 times; what arrives should average to it
    feedback = ErrorFeedback()
    grad = rng.normal(scale=1e-3, size=(8, 64)).astype(np.float32)
    grad[:, 0] = 1.0  # one large feature makes the others' int8 steps coarse
    plain = SecureChannel(None, send_direction=CLIENT_TO_SERVER)
    receiver = SecureChannel(None, send_direction=SERVER_TO_CLIENT)
    total_ef = np.zeros_like(grad)
    total_no = np.zeros_like(grad)

    # Execute
    for step in range(50):
        ctx = FrameContext(1, 1, "t", 1, step)
        total_ef += receiver.open(plain.seal({"g": grad}, ctx, "int8", feedback), ctx)[
            "g"
        ]
    receiver2 = SecureChannel(None, send_direction=SERVER_TO_CLIENT)
    plain2 = SecureChannel(None, send_direction=CLIENT_TO_SERVER)
    for step in range(50):
        ctx = FrameContext(1, 1, "t", 1, step)
        total_no += receiver2.open(plain2.seal({"g": grad}, ctx, "int8"), ctx)["g"]

    # Assert
    err_ef = np.abs(total_ef - 50 * grad).max()
    err_no = np.abs(total_no - 50 * grad).max()
    assert err_ef < err_no / 5


def _reject(
    channel: SecureChannel, frame: bytes, ctx: FrameContext = CTX, **kw: Any
) -> None:
    before = _counters(channel)
    with pytest.raises(ChannelError):
        channel.open(frame, ctx, **kw)
    assert _counters(channel) == before


def test_replayed_and_reordered_frames_are_rejected() -> None:
    # Prepare
    server, client = _pair()
    first = client.seal({"a": ACTIVATIONS}, CTX)
    second = client.seal({"a": ACTIVATIONS}, CTX)

    # Execute / Assert: the second before the first is a reordering
    _reject(server, second)
    server.open(first, CTX)
    _reject(server, first)  # replay
    server.open(second, CTX)


@pytest.mark.parametrize(
    "wrong",
    [
        FrameContext(6, 9, "train.split_step", 2, 3),  # another run
        FrameContext(5, 8, "train.split_step", 2, 3),  # another node
        FrameContext(5, 9, "train.split_apply", 2, 3),  # another message type
        FrameContext(5, 9, "train.split_step", 3, 3),  # another round
        FrameContext(5, 9, "train.split_step", 2, 4),  # another step
    ],
)
def test_frame_moved_to_another_context_is_rejected(wrong: FrameContext) -> None:
    server, client = _pair()
    frame = client.seal({"a": ACTIVATIONS}, CTX)
    _reject(server, frame, wrong)
    server.open(frame, CTX)  # still accepted where it belongs


def test_wrong_key_truncation_shape_and_downgrade_are_rejected() -> None:
    # Prepare
    server, client = _pair()
    stranger, _ = _pair()
    frame = client.seal({"a": ACTIVATIONS}, CTX)
    plain = SecureChannel(None, send_direction=CLIENT_TO_SERVER).seal(
        {"a": ACTIVATIONS}, CTX
    )

    # Execute / Assert
    _reject(stranger, frame)  # wrong key
    _reject(server, frame[:-1])  # truncated tag
    _reject(server, frame[:10])  # truncated prefix
    _reject(server, frame, expected_shapes={"a": (16, 511)})  # wrong shape
    _reject(
        server, frame, expected_shapes={"a": None, "labels": None}
    )  # missing tensor
    _reject(server, plain)  # unencrypted frame on an encrypted channel
    _reject(server, client.seal({"a": ACTIVATIONS}, CTX)[:0])  # empty
    _reject(server, "not bytes")  # type: ignore[arg-type]
    server.open(frame, CTX)


def test_unencrypted_mode_round_trips() -> None:
    # Prepare
    sender = SecureChannel(None, send_direction=CLIENT_TO_SERVER)
    receiver = SecureChannel(None, send_direction=SERVER_TO_CLIENT)

    # Execute
    opened = receiver.open(sender.seal({"a": ACTIVATIONS}, CTX), CTX)

    # Assert
    assert not sender.encrypted
    np.testing.assert_array_equal(opened["a"], ACTIVATIONS)


def test_keys_are_not_reused_across_directions() -> None:
    keys = SessionKeys(send_key=b"k" * 32, recv_key=b"k" * 32)
    a = SecureChannel(keys, send_direction=CLIENT_TO_SERVER)
    b = SecureChannel(keys, send_direction=CLIENT_TO_SERVER)
    # a frame sent by a client-side channel is never accepted by another client side
    _reject(b, a.seal({"a": ACTIVATIONS}, CTX))
