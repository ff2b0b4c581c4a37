"""InFi's client handlers: a camera node trains its skip filter and reports on it.

Each SuperNode owns some testbed cameras (``cameras='0,3'`` in its node config,
else the training cameras dealt round-robin, as PacketGame deals them). Its data
is the black box of ``infi.task`` run over every ``frame-stride``-th frame of
those cameras, split in time (:mod:`.node_data`). In federated mode the filter
comes in each message and goes back trained; in local mode (``own-filter`` in
the message's config) the node keeps its own filter in ``context.state``.
"""

from __future__ import annotations

import functools
import time
from logging import INFO, WARNING
from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.common.logger import log

from edgecloud.capabilities.infi import keys as k
from edgecloud.capabilities.infi.config import InfiConfig
from edgecloud.capabilities.testbed_section import MODELS_DIR
from edgecloud.settings import NodeConfig, RunSettings, load_client_settings
from edgecloud.workflow.client_data import node_cameras
from edgecloud.workflow.keys import (
    ARRAYS,
    CONFIG,
    METRICS,
    NUM_EXAMPLES,
    PARTITION_ID,
    SERVER_ROUND,
    TRAIN_LOSS,
    TRAIN_SECONDS,
)
from edgecloud.workflow.seeds import client_round_seed

if TYPE_CHECKING:
    from edgecloud.capabilities.infi.node_data import NodeParts
    from edgecloud.infi import InputFilter


def register(app: ClientApp) -> None:
    """Register the camera node's train and evaluate handlers."""
    app.train(k.TRAIN_ACTION)(infi_train)
    app.evaluate(k.EVALUATE_ACTION)(infi_evaluate)


def infi_train(msg: Message, context: Context) -> Message:
    """Fit the filter (received, or the node's own) on the node's training part."""
    from edgecloud.capabilities.infi.filter_records import to_arrays
    from edgecloud.infi import fit_skip

    settings, node, cameras, parts = _node(context)
    common, config = settings.common, settings.section
    received = msg.content.config_records[CONFIG]
    server_round = int(received[SERVER_ROUND])  # type: ignore[arg-type]
    model = _filter(msg, context, settings)
    started = time.perf_counter()
    losses = fit_skip(
        model,
        parts.train.inputs,
        parts.train.redundant,
        epochs=config.local_epochs,
        lr=config.lr,
        batch_size=common.batch_size,
        seed=client_round_seed(common.seed, server_round, node.partition_id),
    )
    metrics = {
        NUM_EXAMPLES: len(parts.train),
        TRAIN_LOSS: losses[-1],
        TRAIN_SECONDS: time.perf_counter() - started,
        k.TRAIN_REDUNDANT_SHARE: float(parts.train.redundant.mean()),
    }
    content = RecordDict({METRICS: MetricRecord(metrics)})  # type: ignore[arg-type]
    if _own_filter(msg):
        context.state[k.STATE_FILTER] = ArrayRecord(model.state_dict())
        context.state[k.STATE_SESSION] = ConfigRecord({k.SESSION: _session(msg)})
    else:
        content[ARRAYS] = to_arrays(model)
    log(
        INFO,
        "infi: node %d fit %s filter on %d frames of cameras %s, loss %.4f",
        node.partition_id,
        "its own" if _own_filter(msg) else "the global",
        len(parts.train),
        list(cameras),
        losses[-1],
    )
    return Message(content, reply_to=msg)


def infi_evaluate(msg: Message, context: Context) -> Message:
    """Pick the threshold on the validation part; report the test part's figures."""
    from edgecloud.capabilities.infi.node_data import evaluate_filter

    settings, node, cameras, parts = _node(context)
    config = settings.section
    report = evaluate_filter(
        _filter(msg, context, settings), parts, config.target_accuracy
    )
    metrics = {
        NUM_EXAMPLES: report.num_test,
        PARTITION_ID: node.partition_id,
        k.NUM_CAMERAS: len(cameras),
        k.FILTER_RATE: report.filter_rate,
        k.ACCURACY: report.accuracy,
        k.OPTIMUM_FILTER_RATE: report.optimum_filter_rate,
        k.REDUNDANT_SHARE: report.redundant_share,
        k.VALIDATION_FILTER_RATE: report.validation_filter_rate,
        k.VALIDATION_ACCURACY: report.validation_accuracy,
    }
    log(
        INFO,
        "infi: node %d cameras %s: filter rate %.3f at accuracy %.3f "
        "(optimum %.3f, r_N %.3f, threshold %.4g)",
        node.partition_id,
        list(cameras),
        report.filter_rate,
        report.accuracy,
        report.optimum_filter_rate,
        report.redundant_share,
        report.threshold,
    )
    return Message(RecordDict({METRICS: MetricRecord(metrics)}), reply_to=msg)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the filter
def _own_filter(msg: Message) -> bool:
    """Local mode: the server asks the node to use its own filter."""
    return bool(msg.content.config_records[CONFIG].get(k.OWN_FILTER, False))


def _session(msg: Message) -> str:
    return str(msg.content.config_records[CONFIG].get(k.SESSION, ""))


def _filter(
    msg: Message, context: Context, settings: RunSettings[InfiConfig]
) -> InputFilter:
    """The received global filter, or (local mode) the node's own of this session.

    An own filter of another session (an earlier run in the same simulation)
    is stale: the node starts from the initial weights the server would send.
    """
    from edgecloud.capabilities.infi.filter_records import build_filter, from_arrays

    size = settings.section.size
    if not _own_filter(msg):
        return from_arrays(msg.content.array_records[ARRAYS], size)
    kept = context.state.config_records.get(k.STATE_SESSION)
    if kept is not None and kept.get(k.SESSION) == _session(msg):
        return from_arrays(context.state.array_records[k.STATE_FILTER], size)
    if msg.metadata.message_type == k.MSG_EVALUATE:
        log(WARNING, "infi: evaluating an untrained own filter (never sampled)")
    return build_filter(size, settings.common.seed)


# ------------------------------------------------------------------ this node
def _node(
    context: Context,
) -> tuple[RunSettings[InfiConfig], NodeConfig, tuple[int, ...], NodeParts]:
    """Settings, node facts, this node's camera ids and its data, split in time."""
    settings = load_client_settings(context.run_config, context.node_config, InfiConfig)
    config = settings.section
    node = NodeConfig.from_node_config(context.node_config)
    source = (
        "node config"
        if config.key_of("testbed") in context.node_config
        else "run-config"
    )
    root = config.testbed_path(source)
    cameras = node_cameras(root, node)
    parts = _parts(
        root,
        config.black_box,
        cameras,
        config.frame_stride,
        config.size,
        config.train_fraction,
        config.validation_fraction,
    )
    return settings, node, cameras, parts


# Simulation reuses a process for many messages (and nodes, and runs): the key
# names the cameras, so nodes never share an entry they should not.
@functools.lru_cache(maxsize=2)
def _parts(
    root: Path,
    black_box: str,
    cameras: tuple[int, ...],
    every: int,
    size: tuple[int, int],
    train_fraction: float,
    validation_fraction: float,
) -> NodeParts:
    from edgecloud.capabilities.infi.node_data import node_dataset, split_in_time
    from edgecloud.data.testbed import load_testbed
    from edgecloud.models.blackbox import BlackBoxModel

    model = BlackBoxModel.load(root / MODELS_DIR / black_box)
    dataset = node_dataset(load_testbed(root), model, cameras, every, size)
    return split_in_time(dataset, train_fraction, validation_fraction)
