"""ClientApp glue for split learning: one ``train.split_step`` message = one step.

Everything the device must remember between messages (session keys and counters,
device weights, optimizer buffers, the round's head losses) lives in
``context.state``; it is written only after a message was fully processed, so a
rejected message leaves the device exactly as it was.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)

from edgecloud import protocol as p
from edgecloud.channel import (
    CLIENT_TO_SERVER,
    ChannelError,
    FrameContext,
    Handshake,
    SecureChannel,
    SessionKeys,
    weights_digest,
)
from edgecloud.client_data import load_node_data
from edgecloud.config import NodeConfig, RunConfig
from edgecloud.tasks import SplitModel, get_task
from edgecloud.tasks.split_steps import (
    DeviceSide,
    batch_schedule,
    device_keys,
    device_modules,
    load_optimizer_state,
    make_optimizer,
    optimizer_state,
)

_SESSION, _WEIGHTS, _OPTIMIZER, _PROGRESS = (
    "split-session",
    "split-weights",
    "split-optimizer",
    "split-progress",
)


def split_step(msg: Message, context: Context) -> Message:
    """Apply the received gradient, run the head (U-shaped), send next activations."""
    cfg = RunConfig.from_run_config(context.run_config)
    node = NodeConfig.from_node_config(context.node_config)
    control = msg.content.config_records[p.SPLIT]
    mode, ushaped = str(control["mode"]), control["mode"] == "split-ushaped"
    rnd = int(cast(int, control["server-round"]))
    frame_context = FrameContext(
        int(cast(int, control["run-id"])),
        context.node_id,
        p.MSG_SPLIT_STEP,
        rnd,
        int(cast(int, control["exchange"])),
    )
    start = bool(control.get("start", False))
    train_id = int(cast(int, control["train-id"]))
    if start:
        _forget_other_trainings(context, train_id)
    session, tensors, reply_config = _open_session(
        control, context, frame_context, start
    )
    if control.get("infer", False):
        return _split_inference(
            msg,
            context,
            cfg,
            node,
            control,
            session,
            tensors,
            reply_config,
            frame_context,
            train_id,
        )
    device, model, keys_on_device, num_examples = _device_side(
        cfg, node, msg, context, rnd, start, ushaped
    )
    progress = _progress(context, start)

    # --- one step of the protocol -------------------------------------------------
    out: dict[str, Any] = {}
    if "grad" in tensors:
        device.apply_gradient(int(cast(int, control["grad-step"])), tensors["grad"])
    if "middle" in tensors:
        head_step = int(cast(int, control["head-step"]))
        out["grad_middle"], loss = device.head_step(head_step, tensors["middle"])
        progress["loss-sum"] += loss
        progress["loss-count"] += 1
    want = int(cast(int, control.get("want-step", -1)))
    if want >= 0:
        out["activations"], labels = device.activations(want)
        if not ushaped:  # U-shaped: labels never leave the device
            out["labels"] = labels
    if start:
        reply_config["num-steps"] = len(device.schedule)
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    trained = {k: np.ascontiguousarray(state[k]) for k in keys_on_device}
    final = bool(control.get("final", False))
    if final:
        out[p.FRONT_DIGEST] = weights_digest(trained)
    codec = str(control.get("codec", "fp32"))
    reply_config["frame"] = session.seal(out, frame_context, codec)

    # --- reply, then persist (nothing above touched context.state) ----------------
    content = RecordDict({p.SPLIT: ConfigRecord(reply_config)})
    if final:
        content[p.SPLIT_FRONT] = ArrayRecord({k: Array(v) for k, v in trained.items()})
        metrics: dict[str, Any] = {
            p.NUM_EXAMPLES: num_examples,
            p.PARTITION_ID: node.partition_id,
        }
        if progress["loss-count"]:
            metrics[p.TRAIN_LOSS] = progress["loss-sum"] / progress["loss-count"]
        content[p.METRICS] = MetricRecord(metrics)
    _save(context, session, trained, device, progress, mode, train_id)
    return Message(content, reply_to=msg)


def _split_inference(
    msg: Message,
    context: Context,
    cfg: RunConfig,
    node: NodeConfig,
    control: ConfigRecord,
    session: SecureChannel,
    tensors: dict[str, Any],
    reply_config: dict[str, Any],
    frame_context: FrameContext,
    train_id: int,
) -> Message:
    """Send the validation split's smashed data; score the predictions returned."""
    ushaped = control["mode"] == "split-ushaped"
    task = get_task(cfg.task)
    data = load_node_data(cfg, node).val
    model = cast(SplitModel, task.build_model())
    start = bool(control.get("start", False))
    weights = _device_weights(msg, context, start, device_keys(model, ushaped))
    model.load_state_dict({k: _tensor(v) for k, v in weights.items()}, strict=False)
    front, head = device_modules(model, ushaped)
    device = DeviceSide(
        task, front, make_optimizer(front, cfg.split_lr, 0.0), data, [], head, None
    )
    if start:
        out = {"activations": device.inference_activations(data)}
    else:
        predicted = (
            device.head_predictions(tensors["middle"])
            if ushaped
            else tensors["predictions"]
        )
        if predicted.shape != data.labels.shape:
            raise ChannelError(
                f"{predicted.shape} predictions for {len(data)} examples"
            )
        correct = int((predicted == data.labels).sum())
        out = {
            "correct": np.array([correct], dtype=np.int64),
            "count": np.array([len(data)], dtype=np.int64),
        }
    codec = str(control.get("codec", "fp32"))
    reply_config["frame"] = session.seal(out, frame_context, codec)
    _save_session(context, session, str(control["mode"]), train_id)
    context.state[_WEIGHTS] = ArrayRecord(
        {k: Array(np.ascontiguousarray(v)) for k, v in weights.items()}
    )
    return Message(RecordDict({p.SPLIT: ConfigRecord(reply_config)}), reply_to=msg)


def _open_session(
    control: ConfigRecord, context: Context, frame_context: FrameContext, start: bool
) -> tuple[SecureChannel, dict[str, Any], dict[str, Any]]:
    """Fresh keys at the start of every round, else the restored session + frame."""
    reply_config: dict[str, Any] = {}
    if not start:
        session = _restore_session(context)
        frame = control.get("frame")
        if not isinstance(frame, bytes):
            raise ChannelError("split step carries no frame")
        return session, session.open(frame, frame_context), reply_config
    keys = None
    if "server-pub" in control:
        handshake = Handshake()
        keys = handshake.derive(
            cast(bytes, control["server-pub"]),
            is_server=False,
            run_id=frame_context.run_id,
            node_id=context.node_id,
        )
        reply_config["client-pub"] = handshake.public_bytes
    return SecureChannel(keys, send_direction=CLIENT_TO_SERVER), {}, reply_config


def _device_side(
    cfg: RunConfig,
    node: NodeConfig,
    msg: Message,
    context: Context,
    rnd: int,
    start: bool,
    ushaped: bool,
) -> tuple[DeviceSide, SplitModel, list[str], int]:
    """The device model (weights from the server or from state), optimizer, batches."""
    task = get_task(cfg.task)
    data = load_node_data(cfg, node).train
    model = cast(SplitModel, task.build_model())
    keys_on_device = device_keys(model, ushaped)
    weights = _device_weights(msg, context, start, keys_on_device)
    model.load_state_dict({k: _tensor(v) for k, v in weights.items()}, strict=False)
    front, head = device_modules(model, ushaped)
    device = DeviceSide(
        task,
        front,
        make_optimizer(front, cfg.split_lr, cfg.momentum),
        data,
        batch_schedule(
            len(data),
            cfg.batch_size,
            cfg.local_epochs,
            seed=cfg.seed + 7919 * rnd + node.partition_id,
        ),
        head,
        make_optimizer(head, cfg.split_lr, cfg.momentum) if head is not None else None,
    )
    _restore_optimizers(context, device)
    return device, model, keys_on_device, len(data)


def _tensor(value: Any) -> Any:
    import torch

    return torch.from_numpy(np.asarray(value))


def _device_weights(
    msg: Message, context: Context, start: bool, keys: list[str]
) -> dict[str, Any]:
    if start and p.SPLIT_FRONT in msg.content.array_records:
        record = msg.content.array_records[p.SPLIT_FRONT]
    elif _WEIGHTS in context.state.array_records:
        record = context.state.array_records[_WEIGHTS]
    else:
        raise ValueError(
            "no device weights: neither sent by the server nor kept locally"
        )
    weights = {k: a.numpy() for k, a in record.items()}
    if set(weights) != set(keys):
        raise ValueError(
            f"device weights have {len(weights)} keys; expected {len(keys)}"
        )
    return weights


def _forget_other_trainings(context: Context, train_id: int) -> None:
    """Drop device state left by another training run (e.g. an earlier strategy)."""
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
    buffers = {k: a.numpy() for k, a in context.state.array_records[_OPTIMIZER].items()}
    load_optimizer_state(
        device.front_optimizer,
        {k[6:]: v for k, v in buffers.items() if k.startswith("front.")},
    )
    if device.head_optimizer is not None:
        load_optimizer_state(
            device.head_optimizer,
            {k[5:]: v for k, v in buffers.items() if k.startswith("head.")},
        )


def _progress(context: Context, start: bool) -> dict[str, float]:
    if start or _PROGRESS not in context.state.metric_records:
        return {"loss-sum": 0.0, "loss-count": 0.0}
    saved = context.state.metric_records[_PROGRESS]
    return {k: float(cast(float, saved[k])) for k in ("loss-sum", "loss-count")}


def _save(
    context: Context,
    session: SecureChannel,
    trained: dict[str, Any],
    device: DeviceSide,
    progress: dict[str, float],
    mode: str,
    train_id: int,
) -> None:
    _save_session(context, session, mode, train_id)
    context.state[_WEIGHTS] = ArrayRecord({k: Array(v) for k, v in trained.items()})
    buffers = {
        f"front.{k}": v for k, v in optimizer_state(device.front_optimizer).items()
    }
    if device.head_optimizer is not None:
        buffers |= {
            f"head.{k}": v for k, v in optimizer_state(device.head_optimizer).items()
        }
    context.state[_OPTIMIZER] = ArrayRecord({k: Array(v) for k, v in buffers.items()})
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
