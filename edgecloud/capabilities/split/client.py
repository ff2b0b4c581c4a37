"""The device side of split learning, over Flower messages or a streamed session.

``train.split_step``: one message is one step. What the device must remember
between messages (session keys and counters, device weights, optimizer buffers,
the round's losses) lives in ``context.state``, written only after a message was
fully processed, so a rejected message leaves the device exactly as it was.

``train.split_session``: one message per round carries a session ticket; the
handler connects to the server's endpoint, sets the round up once (settings, data,
model, optimizers) and runs every step over the stream; ``context.state`` is
written once, after the round's last step succeeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edgecloud.capabilities.split import keys as k
from edgecloud.capabilities.split.config import SplitConfig
from edgecloud.capabilities.split.device import (
    LOCAL_LOSS,
    DeviceRound,
    DeviceState,
    inference_step,
)
from edgecloud.channel import (
    CLIENT_TO_SERVER,
    ChannelError,
    FrameContext,
    Handshake,
    SecureChannel,
    SessionKeys,
)
from edgecloud.channel.envelope import open_control, pack, seal_control, unpack
from edgecloud.settings import NodeConfig, RunSettings, load_client_settings
from edgecloud.types import NDArray
from edgecloud.workflow.keys import METRICS
from edgecloud.workflow.records import from_record, to_record
from edgecloud.workflow.stream import (
    SESSION,
    STATUS,
    STATUS_DONE,
    connect_client,
    end_session,
    session_messages,
)

# context.state entries (local to the device, never sent).
_SESSION, _WEIGHTS, _OPTIMIZER, _PROGRESS = (
    "split-session",
    "split-weights",
    "split-optimizer",
    "split-progress",
)


def register(app: ClientApp) -> None:
    """Register the per-step and the per-round (streamed) handlers."""
    app.train(k.STEP_ACTION)(split_step)
    app.train(k.SESSION_ACTION)(split_session)


def _settings(context: Context) -> RunSettings[SplitConfig]:
    return load_client_settings(context.run_config, context.node_config, SplitConfig)


# ------------------------------------------------------------------ messages
def split_step(msg: Message, context: Context) -> Message:
    """One step: apply the gradient, run the head, send the next activations."""
    settings = _settings(context)
    node = NodeConfig.from_node_config(context.node_config)
    control = msg.content.config_records[k.CONTROL]
    mode = str(control[k.MODE])
    frame_context = FrameContext(
        int(cast(int, control[k.RUN_ID])),
        context.node_id,
        k.MSG_STEP,
        int(cast(int, control[k.SERVER_ROUND])),
        int(cast(int, control[k.EXCHANGE])),
    )
    start = bool(control.get(k.START, False))
    train_id = int(cast(int, control[k.TRAIN_ID]))
    if start:
        _forget_other_trainings(context, train_id)
    session, tensors, reply_config = _open_session(
        control, context, frame_context, start
    )
    codec = str(control[k.CODEC])
    if control.get(k.INFER, False):
        weights = _start_weights(msg, context) if start else _kept_weights(context)
        out = inference_step(settings, node, mode, weights, tensors, start)
        reply_config[k.FRAME] = session.seal(out, frame_context, codec)
        _save_session(context, session, mode, train_id)
        context.state[_WEIGHTS] = to_record(weights)
        return Message(
            RecordDict({k.CONTROL: ConfigRecord(reply_config)}), reply_to=msg
        )

    device = DeviceRound(
        settings,
        node,
        mode,
        frame_context.server_round,
        _device_state(msg, context, start),
    )
    out, values = device.step(control, tensors)
    reply_config.update(values)
    final = bool(control.get(k.FINAL, False)) or mode == LOCAL_LOSS
    reply_config[k.FRAME] = session.seal(out, frame_context, codec)

    # --- reply, then persist (nothing above touched context.state) ----------------
    content = RecordDict({k.CONTROL: ConfigRecord(reply_config)})
    if final:
        content[k.FRONT] = to_record(device.trained())
        content[METRICS] = MetricRecord(device.metrics())
    _save_session(context, session, mode, train_id)
    _save_state(context, device.state())
    return Message(content, reply_to=msg)


def _open_session(
    control: ConfigRecord, context: Context, frame_context: FrameContext, start: bool
) -> tuple[SecureChannel, dict[str, NDArray], dict[str, Any]]:
    """Fresh keys at the start of every round, else the restored session + frame."""
    reply_config: dict[str, Any] = {}
    if not start:
        session = _restore_session(context)
        frame = control.get(k.FRAME)
        if not isinstance(frame, bytes):
            raise ChannelError("split step carries no frame")
        return session, session.open(frame, frame_context), reply_config
    keys = None
    if k.SERVER_PUB in control:
        handshake = Handshake()
        keys = handshake.derive(
            cast(bytes, control[k.SERVER_PUB]),
            is_server=False,
            run_id=frame_context.run_id,
            node_id=context.node_id,
        )
        reply_config[k.CLIENT_PUB] = handshake.public_bytes
    return SecureChannel(keys, send_direction=CLIENT_TO_SERVER), {}, reply_config


def _device_state(msg: Message, context: Context, start: bool) -> DeviceState:
    """Weights from the server (start) or kept locally; buffers and progress."""
    weights = _start_weights(msg, context) if start else _kept_weights(context)
    state = DeviceState(weights, _kept_buffers(context))
    if not start and _PROGRESS in context.state.metric_records:
        saved = context.state.metric_records[_PROGRESS]
        state.loss_sum = float(cast(float, saved["loss-sum"]))
        state.loss_count = float(cast(float, saved["loss-count"]))
    return state


def _start_weights(msg: Message, context: Context) -> dict[str, NDArray]:
    """The server's device weights, or (SplitFed between syncs) the node's own."""
    if k.FRONT in msg.content.array_records:
        return from_record(msg.content.array_records[k.FRONT])
    return _kept_weights(context)


def _kept_weights(context: Context) -> dict[str, NDArray]:
    if _WEIGHTS not in context.state.array_records:
        raise ValueError("no device weights: neither sent by the server nor kept")
    return from_record(context.state.array_records[_WEIGHTS])


def _forget_other_trainings(context: Context, train_id: int) -> None:
    """Drop device state left by another training run (e.g. an earlier mode)."""
    saved = context.state.config_records.get(_SESSION)
    if saved is not None and saved.get("train-id") == train_id:
        return
    for key in (_SESSION, _WEIGHTS, _OPTIMIZER, _PROGRESS):
        if key in context.state:
            del context.state[key]


def _restore_session(context: Context) -> SecureChannel:
    if _SESSION not in context.state.config_records:
        raise ChannelError(
            "no channel session on this node: the round did not start here"
        )
    saved = context.state.config_records[_SESSION]
    keys = None
    if saved["encrypted"]:
        keys = SessionKeys(
            cast(bytes, saved["send-key"]), cast(bytes, saved["recv-key"])
        )
    return SecureChannel(
        keys,
        send_direction=CLIENT_TO_SERVER,
        send_counter=int(cast(int, saved["send-counter"])),
        recv_counter=int(cast(int, saved["recv-counter"])),
    )


def _save_session(
    context: Context, session: SecureChannel | None, mode: str, train_id: int
) -> None:
    """The message channel's keys and counters (none after a streamed round)."""
    keys = session.keys if session is not None else None
    context.state[_SESSION] = ConfigRecord(
        {
            "encrypted": keys is not None,
            "send-key": keys.send_key if keys else b"",
            "recv-key": keys.recv_key if keys else b"",
            "send-counter": session.send_counter if session else 0,
            "recv-counter": session.recv_counter if session else 0,
            "mode": mode,
            "train-id": train_id,
        }
    )


def _save_state(context: Context, state: DeviceState) -> None:
    context.state[_WEIGHTS] = to_record(state.weights)
    context.state[_OPTIMIZER] = to_record(state.optimizer)
    context.state[_PROGRESS] = MetricRecord(
        {"loss-sum": state.loss_sum, "loss-count": state.loss_count}
    )


# ------------------------------------------------------------------- stream
def split_session(msg: Message, context: Context) -> Message:
    """A whole round (or split inference) over the server's streamed session."""
    settings = _settings(context)
    control = msg.content.config_records[k.CONTROL]
    run_id = int(cast(int, control[k.RUN_ID]))
    train_id = int(cast(int, control[k.TRAIN_ID]))
    infer = bool(control.get(k.INFER, False))
    if not infer:
        _forget_other_trainings(context, train_id)
    connected = connect_client(
        msg,
        run_id=run_id,
        node_id=context.node_id,
        ca_pem=_pinned_ca(settings),
        max_message_bytes=settings.section.stream_max_message_mib << 20,
    )
    if isinstance(connected, Message):  # unreachable; auto: over messages instead
        return connected
    client, keys = connected
    on = bool(control.get(k.ENCRYPTED, True))
    channel = SecureChannel(keys if on else None, send_direction=CLIENT_TO_SERVER)
    device = _StreamedRound(settings, context, control)
    timeout = settings.common.round_timeout
    with client:
        for exchange, received in enumerate(session_messages(client, timeout)):
            where = FrameContext(
                run_id, context.node_id, k.MSG_SESSION, device.round, exchange
            )
            frames = unpack(received)
            step = open_control(channel, frames[0], where)
            tensors = channel.open(frames[1], where) if len(frames) > 1 else {}
            front = channel.open(frames[2], where) if len(frames) > 2 else None
            out, values, trained = device.answer(step, tensors, front)
            # frames in counter order: control, tensors, then (last step) weights
            sealed = [
                seal_control(channel, values, where),
                channel.seal(out, where, device.codec),
            ]
            if trained is not None:
                sealed.append(channel.seal(trained, where))
            client.send(pack(sealed))
            if values.get(k.LAST, False):
                end_session(client, timeout)
                break
    content = RecordDict({SESSION: ConfigRecord({STATUS: STATUS_DONE})})
    if device.round_state is not None:  # the round succeeded: persist once
        _save_session(context, None, device.mode, train_id)
        _save_state(context, device.round_state.state())
        content[METRICS] = MetricRecord(device.round_state.metrics())
    return Message(content, reply_to=msg)


class _StreamedRound:
    """The device's side of one streamed session: set up once, then every step."""

    def __init__(
        self,
        settings: RunSettings[SplitConfig],
        context: Context,
        control: ConfigRecord,
    ) -> None:
        self.settings, self.context = settings, context
        self.node = NodeConfig.from_node_config(context.node_config)
        self.mode, self.codec = str(control[k.MODE]), str(control[k.CODEC])
        self.round = int(cast(int, control[k.SERVER_ROUND]))
        self.infer = bool(control.get(k.INFER, False))
        self.round_state: DeviceRound | None = None
        self.served: dict[str, NDArray] = {}  # inference: the model to serve

    def answer(
        self,
        step: Mapping[str, Any],
        tensors: dict[str, NDArray],
        front: dict[str, NDArray] | None,
    ) -> tuple[dict[str, NDArray], dict[str, Any], dict[str, NDArray] | None]:
        """(tensors, control values, trained weights on the last step) of a reply."""
        start = bool(step.get(k.START, False))
        if self.infer:
            if front is not None:  # the model to serve comes with the start
                self.served = front
            out = inference_step(
                self.settings, self.node, self.mode, self.served, tensors, start
            )
            return out, {k.LAST: not start}, None
        if self.round_state is None:  # the round's set-up, once
            weights = front if front is not None else _kept_weights(self.context)
            state = DeviceState(weights, _kept_buffers(self.context))
            self.round_state = DeviceRound(
                self.settings, self.node, self.mode, self.round, state
            )
        device = self.round_state
        out, values = device.step(step, tensors)
        if not (bool(step.get(k.FINAL, False)) or self.mode == LOCAL_LOSS):
            return out, values, None
        values |= {k.LAST: True, k.METRICS: device.metrics()}
        return out, values, device.trained()


def _kept_buffers(context: Context) -> dict[str, NDArray]:
    """The node's optimizer buffers (momentum carries across rounds)."""
    if _OPTIMIZER not in context.state.array_records:
        return {}
    return from_record(context.state.array_records[_OPTIMIZER])


def _pinned_ca(settings: RunSettings[SplitConfig]) -> bytes | None:
    """The CA this node trusts instead of the ticket's (node config ``stream-ca``)."""
    path = settings.section.stream_ca
    return Path(path).expanduser().read_bytes() if path else None
