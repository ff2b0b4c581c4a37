"""The train.split_step handler with real Messages: rejected frames change nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from edgecloud.capabilities.split import keys as k
from edgecloud.capabilities.split.client import split_step
from edgecloud.channel import (
    SERVER_TO_CLIENT,
    ChannelError,
    FrameContext,
    Handshake,
    SecureChannel,
)
from edgecloud.tasks import get_task
from edgecloud.tasks.split_steps import device_keys
from tests.conftest import metadata

RUN, NODE, TRAIN = 3, 7, 11


def _message(config: dict[str, Any], front: dict[str, Any] | None = None) -> Message:
    content = RecordDict({k.CONTROL: ConfigRecord(config)})
    if front is not None:
        content[k.FRONT] = ArrayRecord({n: Array(v) for n, v in front.items()})
    return Message(metadata=metadata(0, k.MSG_STEP), content=content)


def _snapshot(context: Context) -> dict[str, bytes]:
    out = {}
    for name, record in context.state.items():
        for key, value in record.items():
            out[f"{name}/{key}"] = getattr(value, "data", repr(value).encode())
    return out


@pytest.fixture
def started(run_config: dict[str, Any]) -> tuple[Context, SecureChannel, Message]:
    """A client that has answered the start of round 1 (split mode)."""
    torch.manual_seed(0)
    model = get_task("digits-cnn").build_model()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    front = {name: state[name] for name in device_keys(model, ushaped=False)}
    context = Context(
        run_id=RUN,
        node_id=NODE,
        node_config={"partition-id": 0, "num-partitions": 2},
        state=RecordDict(),
        run_config=run_config,
    )
    handshake = Handshake()
    base = {
        k.MODE: "split",
        k.SERVER_ROUND: 1,
        k.RUN_ID: RUN,
        k.TRAIN_ID: TRAIN,
        k.CODEC: "fp32",
    }
    reply = split_step(
        _message(
            {
                **base,
                k.EXCHANGE: 0,
                k.START: True,
                k.WANT_STEP: 0,
                k.SERVER_PUB: handshake.public_bytes,
            },
            front,
        ),
        context,
    )
    keys = handshake.derive(
        reply.content.config_records[k.CONTROL][k.CLIENT_PUB],
        is_server=True,
        run_id=RUN,
        node_id=NODE,
    )
    server = SecureChannel(keys, send_direction=SERVER_TO_CLIENT)
    first = server.open(
        reply.content.config_records[k.CONTROL][k.FRAME],
        FrameContext(RUN, NODE, k.MSG_STEP, 1, 0),
    )
    assert first[k.ACTIVATIONS].shape[1] == 512 and first[k.LABELS].dtype == np.int64
    assert reply.content.config_records[k.CONTROL][k.NUM_STEPS] > 1
    return context, server, _message(base)


def _step_message(
    base: Message, server: SecureChannel, grad: np.ndarray[Any, Any], **overrides: Any
) -> Message:
    config = {
        **dict(base.content.config_records[k.CONTROL]),
        k.EXCHANGE: 1,
        k.GRAD_STEP: 0,
        k.WANT_STEP: 1,
        **overrides,
    }
    config[k.FRAME] = server.seal(
        {k.GRAD: grad}, FrameContext(RUN, NODE, k.MSG_STEP, 1, 1)
    )
    return _message(config)


def test_tampered_gradient_frame_leaves_device_state_unchanged(
    started: tuple[Context, SecureChannel, Message],
) -> None:
    # Prepare
    context, server, base = started
    grad = np.full((16, 512), 0.01, dtype=np.float32)
    good = _step_message(base, server, grad)
    frame = bytearray(good.content.config_records[k.CONTROL][k.FRAME])
    frame[-20] ^= 0x01  # one bit in the ciphertext
    bad = _message(
        {**dict(good.content.config_records[k.CONTROL]), k.FRAME: bytes(frame)}
    )
    before = _snapshot(context)

    # Execute / Assert: rejected, nothing persisted
    with pytest.raises(ChannelError, match="authentication failed"):
        split_step(bad, context)
    assert _snapshot(context) == before

    # Execute / Assert: the genuine frame is still accepted and moves the state
    reply = split_step(good, context)
    assert reply.content.config_records[k.CONTROL][k.FRAME]
    assert _snapshot(context) != before


def test_gradient_of_the_wrong_shape_changes_nothing(
    started: tuple[Context, SecureChannel, Message],
) -> None:
    context, server, base = started
    before = _snapshot(context)
    with pytest.raises(ValueError, match="gradient shape"):
        split_step(
            _step_message(base, server, np.zeros((16, 511), np.float32)), context
        )
    assert _snapshot(context) == before


def test_step_for_another_round_is_rejected(
    started: tuple[Context, SecureChannel, Message],
) -> None:
    # Prepare: a frame sealed for round 1 presented as round 2
    context, server, base = started
    message = _step_message(base, server, np.zeros((16, 512), np.float32))
    moved = _message(
        {**dict(message.content.config_records[k.CONTROL]), k.SERVER_ROUND: 2}
    )
    before = _snapshot(context)

    # Execute / Assert
    with pytest.raises(ChannelError):
        split_step(moved, context)
    assert _snapshot(context) == before
