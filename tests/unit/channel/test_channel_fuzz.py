"""Fuzzing: >= 10 000 mutated frames, none accepted, only ChannelError raised."""

from __future__ import annotations

import contextlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecloud.channel import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    ChannelError,
    FrameContext,
    Handshake,
    SecureChannel,
)

CTX = FrameContext(
    run_id=1, node_id=2, message_type="train.split_step", server_round=1, step=0
)


def _pair(codec: str = "int8") -> tuple[SecureChannel, bytes]:
    server, client = Handshake(), Handshake()
    receiver = SecureChannel(
        server.derive(client.public_bytes, is_server=True, run_id=1, node_id=2),
        send_direction=SERVER_TO_CLIENT,
    )
    sender = SecureChannel(
        client.derive(server.public_bytes, is_server=False, run_id=1, node_id=2),
        send_direction=CLIENT_TO_SERVER,
    )
    rng = np.random.default_rng(0)
    frame = sender.seal(
        {
            "activations": rng.normal(size=(4, 3, 2, 2)).astype(np.float32),
            "labels": np.arange(4, dtype=np.int64),
        },
        CTX,
        codec=codec,
    )
    return receiver, frame


def _mutate(frame: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(frame)
    kind = rng.integers(0, 7)
    if kind == 0:  # flip one bit anywhere (prefix, header, body or tag)
        pos = int(rng.integers(0, len(data)))
        data[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # overwrite a run of bytes
        pos = int(rng.integers(0, len(data)))
        n = int(rng.integers(1, 9))
        data[pos : pos + n] = rng.integers(
            0, 256, size=len(data[pos : pos + n]), dtype=np.uint8
        ).tobytes()
    elif kind == 2:  # truncate
        del data[int(rng.integers(0, len(data))) :]
    elif kind == 3:  # append garbage
        data += rng.integers(
            0, 256, size=int(rng.integers(1, 32)), dtype=np.uint8
        ).tobytes()
    elif kind == 4:  # rewrite the counter (replay / reorder)
        data[5:13] = int(rng.integers(1, 2**63)).to_bytes(8, "big")
    elif kind == 5:  # rewrite the header length
        data[13:17] = int(rng.integers(0, 2**32)).to_bytes(4, "big")
    else:  # delete a slice from the middle
        start = int(rng.integers(0, len(data)))
        del data[start : start + int(rng.integers(1, 16))]
    return bytes(data)


def test_ten_thousand_mutated_frames_are_all_rejected() -> None:
    # Prepare
    receiver, frame = _pair()
    rng = np.random.default_rng(1234)
    rejected = 0

    # Execute
    for _ in range(10_000):
        mutated = _mutate(frame, rng)
        if mutated == frame:
            continue
        try:
            receiver.open(mutated, CTX)
        except ChannelError:
            rejected += 1
        else:  # pragma: no cover - would be a security bug
            raise AssertionError(f"mutated frame accepted: {mutated!r}")
        assert (receiver.send_counter, receiver.recv_counter) == (0, 0)

    # Assert: the genuine frame is still accepted afterwards
    assert rejected >= 9_900
    assert receiver.open(frame, CTX)["labels"].tolist() == [0, 1, 2, 3]


@settings(
    max_examples=2_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.binary(min_size=0, max_size=400))
def test_arbitrary_bytes_only_raise_channel_error(data: bytes) -> None:
    receiver, _ = _pair("fp32")
    with contextlib.suppress(ChannelError):
        receiver.open(data, CTX)
    assert receiver.recv_counter == 0


@settings(max_examples=1_000, deadline=None)
@given(position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255))
def test_any_single_byte_change_is_rejected(position: int, value: int) -> None:
    receiver, frame = _pair("fp32")
    mutated = bytearray(frame)
    mutated[position % len(frame)] = value
    if bytes(mutated) == frame:
        return
    try:
        receiver.open(bytes(mutated), CTX)
    except ChannelError:
        return
    raise AssertionError("a changed byte was accepted")
