"""The device side of split learning: one ``train.split_step`` message = one step.

Everything the device must remember between messages (session keys and counters,
device weights, optimizer buffers, the round's head losses) lives in
``context.state``; it is written only after a message was fully processed, so a
rejected message leaves the device exactly as it was.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edgecloud.capabilities.split import keys as k
from edgecloud.capabilities.split.config import SplitConfig
from edgecloud.channel import (
    CLIENT_TO_SERVER,
    ChannelError,
    FrameContext,
    Handshake,
    SecureChannel,
    SessionKeys,
    weights_digest,
)
from edgecloud.settings import (
    CommonSettings,
    NodeConfig,
    RunSettings,
    load_client_settings,
)
from edgecloud.tasks import SplitModel, load_numpy_state, state_to_numpy
from edgecloud.tasks.split_steps import (
    DeviceSide,
    batch_schedule,
    device_keys,
    device_modules,
    load_optimizer_state,
    make_optimizer,
    optimizer_state,
)
from edgecloud.types import NDArray
from edgecloud.workflow.client_data import load_node_data
from edgecloud.workflow.keys import METRICS, NUM_EXAMPLES, PARTITION_ID, TRAIN_LOSS
from edgecloud.workflow.records import from_record, to_record
from edgecloud.workflow.seeds import client_round_seed

# context.state entries (local to the device, never sent).
_SESSION, _WEIGHTS, _OPTIMIZER, _PROGRESS = (
    "split-session",
    "split-weights",
    "split-optimizer",
    "split-progress",
)


def register(app: ClientApp) -> None:
    """Register the split-learning step handler."""
    app.train(k.STEP_ACTION)(split_step)


def split_step(msg: Message, context: Context) -> Message:
    """Apply the received gradient, run the head (U-shaped), send next activations."""
    settings: RunSettings[SplitConfig] = load_client_settings(
        context.run_config, context.node_config, SplitConfig
    )
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
    if control.get(k.INFER, False):
        return _split_inference(
            msg, context, settings, node, control, session, tensors, reply_config,
            frame_context, train_id,
        )  # fmt: skip
    device, model, keys_on_device, num_examples = _device_side(
        settings, node, msg, context, frame_context.server_round, start, mode
    )
    progress = _progress(context, start)

    # --- one step of the protocol -------------------------------------------------
    out: dict[str, NDArray] = {}
    if k.GRAD in tensors:
        device.apply_gradient(int(cast(int, control[k.GRAD_STEP])), tensors[k.GRAD])
    if k.MIDDLE in tensors:
        head_step = int(cast(int, control[k.HEAD_STEP]))
        out[k.GRAD_MIDDLE], loss = device.head_step(head_step, tensors[k.MIDDLE])
        progress["loss-sum"] += loss
        progress["loss-count"] += 1
    want = int(cast(int, control.get(k.WANT_STEP, -1)))
    if want >= 0:
        out[k.ACTIVATIONS], labels = device.activations(want)
        if mode != "split-ushaped":  # U-shaped: labels never leave the device
            out[k.LABELS] = labels
    if start:
        reply_config[k.NUM_STEPS] = len(device.schedule)
    state = state_to_numpy(model)
    trained = {key: np.ascontiguousarray(state[key]) for key in keys_on_device}
    final = bool(control.get(k.FINAL, False))
    if final:
        out[k.FRONT_DIGEST] = weights_digest(trained)
    reply_config[k.FRAME] = session.seal(out, frame_context, str(control[k.CODEC]))

    # --- reply, then persist (nothing above touched context.state) ----------------
    content = RecordDict({k.CONTROL: ConfigRecord(reply_config)})
    if final:
        content[k.FRONT] = to_record(trained)
        metrics: dict[str, Any] = {
            NUM_EXAMPLES: num_examples,
            PARTITION_ID: node.partition_id,
        }
        if progress["loss-count"]:
            metrics[TRAIN_LOSS] = progress["loss-sum"] / progress["loss-count"]
        content[METRICS] = MetricRecord(metrics)
    _save(context, session, trained, device, progress, mode, train_id)
    return Message(content, reply_to=msg)


def _split_inference(
    msg: Message,
    context: Context,
    settings: RunSettings[SplitConfig],
    node: NodeConfig,
    control: ConfigRecord,
    session: SecureChannel,
    tensors: dict[str, NDArray],
    reply_config: dict[str, Any],
    frame_context: FrameContext,
    train_id: int,
) -> Message:
    """Send the validation split's smashed data; score the predictions returned."""
    mode = str(control[k.MODE])
    ushaped = mode == "split-ushaped"
    task = settings.common.task_plugin
    data = load_node_data(settings.common, node).val
    model = cast(SplitModel, task.build_model())
    start = bool(control.get(k.START, False))
    weights = _device_weights(msg, context, start, device_keys(model, ushaped))
    load_numpy_state(model, {**state_to_numpy(model), **weights})
    front, head = device_modules(model, ushaped)
    device = DeviceSide(
        task, front, make_optimizer(front, settings.section.lr, 0.0), data, [], head
    )
    out: dict[str, NDArray]
    if start:
        out = {k.ACTIVATIONS: device.inference_activations(data)}
    else:
        predicted = (
            device.head_predictions(tensors[k.MIDDLE])
            if ushaped
            else tensors[k.PREDICTIONS]
        )
        if predicted.shape != data.labels.shape:
            raise ChannelError(
                f"{predicted.shape} predictions for {len(data)} examples"
            )
        out = {
            k.CORRECT: np.array([int((predicted == data.labels).sum())], np.int64),
            k.COUNT: np.array([len(data)], dtype=np.int64),
        }
    reply_config[k.FRAME] = session.seal(out, frame_context, str(control[k.CODEC]))
    _save_session(context, session, mode, train_id)
    context.state[_WEIGHTS] = to_record(weights)
    return Message(RecordDict({k.CONTROL: ConfigRecord(reply_config)}), reply_to=msg)


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


def _device_side(
    settings: RunSettings[SplitConfig],
    node: NodeConfig,
    msg: Message,
    context: Context,
    rnd: int,
    start: bool,
    mode: str,
) -> tuple[DeviceSide, SplitModel, list[str], int]:
    """The device model (weights from the server or from state), optimizer, batches."""
    common: CommonSettings = settings.common
    lr = settings.section.lr
    task = common.task_plugin
    data = load_node_data(common, node).train
    model = cast(SplitModel, task.build_model())
    ushaped = mode == "split-ushaped"
    keys_on_device = device_keys(model, ushaped)
    weights = _device_weights(msg, context, start, keys_on_device)
    load_numpy_state(model, {**state_to_numpy(model), **weights})
    front, head = device_modules(model, ushaped)
    device = DeviceSide(
        task,
        front,
        make_optimizer(front, lr, common.momentum),
        data,
        batch_schedule(
            len(data),
            common.batch_size,
            common.local_epochs,
            seed=client_round_seed(common.seed, rnd, node.partition_id),
        ),
        head,
        make_optimizer(head, lr, common.momentum) if head is not None else None,
    )
    _restore_optimizers(context, device)
    return device, model, keys_on_device, len(data)


def _device_weights(
    msg: Message, context: Context, start: bool, keys: list[str]
) -> dict[str, NDArray]:
    if start and k.FRONT in msg.content.array_records:
        record = msg.content.array_records[k.FRONT]
    elif _WEIGHTS in context.state.array_records:
        record = context.state.array_records[_WEIGHTS]
    else:
        raise ValueError(
            "no device weights: neither sent by the server nor kept locally"
        )
    weights = from_record(record)
    if set(weights) != set(keys):
        raise ValueError(
            f"device weights have {len(weights)} keys; expected {len(keys)}"
        )
    return weights


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


def _restore_optimizers(context: Context, device: DeviceSide) -> None:
    if _OPTIMIZER not in context.state.array_records:
        return
    buffers = from_record(context.state.array_records[_OPTIMIZER])
    load_optimizer_state(
        device.front_optimizer,
        {key[6:]: v for key, v in buffers.items() if key.startswith("front.")},
    )
    if device.head_optimizer is not None:
        load_optimizer_state(
            device.head_optimizer,
            {key[5:]: v for key, v in buffers.items() if key.startswith("head.")},
        )


def _progress(context: Context, start: bool) -> dict[str, float]:
    if start or _PROGRESS not in context.state.metric_records:
        return {"loss-sum": 0.0, "loss-count": 0.0}
    saved = context.state.metric_records[_PROGRESS]
    return {key: float(cast(float, saved[key])) for key in ("loss-sum", "loss-count")}


def _save(
    context: Context,
    session: SecureChannel,
    trained: dict[str, NDArray],
    device: DeviceSide,
    progress: dict[str, float],
    mode: str,
    train_id: int,
) -> None:
    _save_session(context, session, mode, train_id)
    context.state[_WEIGHTS] = to_record(trained)
    buffers = {
        f"front.{key}": v for key, v in optimizer_state(device.front_optimizer).items()
    }
    if device.head_optimizer is not None:
        buffers |= {
            f"head.{key}": v
            for key, v in optimizer_state(device.head_optimizer).items()
        }
    context.state[_OPTIMIZER] = to_record(buffers)
    context.state[_PROGRESS] = MetricRecord(progress)  # type: ignore[arg-type]


def _save_session(
    context: Context, session: SecureChannel, mode: str, train_id: int
) -> None:
    keys = session.keys
    context.state[_SESSION] = ConfigRecord(
        {
            "encrypted": keys is not None,
            "send-key": keys.send_key if keys else b"",
            "recv-key": keys.recv_key if keys else b"",
            "send-counter": session.send_counter,
            "recv-counter": session.recv_counter,
            "mode": mode,
            "train-id": train_id,
        }
    )
