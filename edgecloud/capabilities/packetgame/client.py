"""PacketGame's client handlers: an edge server's predictor training and live analytics.

Each SuperNode is an edge server with its own cameras: ``cameras='0,3'`` in its
node config, else the testbed's training cameras dealt round-robin by
``partition-id`` / ``num-partitions``. Its feedback log is a decode-everything
pass of the black box over those cameras (``training_data``); its live streams
are the same cameras, gated by ``run_online``.
"""

from __future__ import annotations

import functools
import time
from logging import INFO
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.logger import log

from edgecloud.capabilities.packetgame import keys as k
from edgecloud.capabilities.packetgame.config import PacketGameConfig
from edgecloud.capabilities.testbed_section import MODELS_DIR
from edgecloud.settings import NodeConfig, RunSettings, load_client_settings
from edgecloud.workflow.client_data import node_cameras
from edgecloud.workflow.keys import (
    ARRAYS,
    CONFIG,
    METRICS,
    NUM_EXAMPLES,
    SERVER_ROUND,
    TRAIN_LOSS,
    TRAIN_SECONDS,
)
from edgecloud.workflow.seeds import client_round_seed

if TYPE_CHECKING:
    from edgecloud.data.testbed import CameraVideo
    from edgecloud.packetgame import DecodeCosts, FrameModel, Redundancy

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Packets timed per node to calibrate its decode costs (the budget's unit).
_CALIBRATION_PACKETS = 600


def register(app: ClientApp) -> None:
    """Register the edge server's train and analytics handlers."""
    app.train(k.TRAIN_ACTION)(packetgame_train)
    app.query(k.ANALYTICS_ACTION)(packetgame_analytics)


def packetgame_train(msg: Message, context: Context) -> Message:
    """Fit the received predictor on this node's feedback log (FedAvg's reply)."""
    from edgecloud.capabilities.packetgame.predictor_records import (
        from_arrays,
        to_arrays,
    )
    from edgecloud.packetgame import fit

    settings, node, root, cameras = _edge(context)
    common, config = settings.common, settings.section
    predictor = from_arrays(msg.content.array_records[ARRAYS], config.window)
    rows = _training_rows(
        root,
        config.model,
        config.redundancy,
        config.window,
        cameras,
        config.size,
        config.policy == "contextual",
    )
    server_round = int(cast(int, msg.content.config_records[CONFIG][SERVER_ROUND]))
    started = time.perf_counter()
    sizes, intra, estimates, labels = rows
    losses = fit(
        predictor,
        sizes,
        intra,
        estimates,
        labels,
        epochs=config.epochs,
        lr=config.lr,
        batch_size=common.batch_size,
        seed=client_round_seed(common.seed, server_round, node.partition_id),
    )
    metrics = {
        NUM_EXAMPLES: len(labels),
        TRAIN_LOSS: losses[-1],
        TRAIN_SECONDS: time.perf_counter() - started,
        k.POSITIVE_RATE: float(np.mean(labels)),
        k.NUM_CAMERAS: len(cameras),
    }
    log(
        INFO,
        "packetgame: node %d fit %d rows of cameras %s, loss %.4f",
        node.partition_id,
        len(labels),
        list(cameras),
        losses[-1],
    )
    content = RecordDict(
        {ARRAYS: to_arrays(predictor), METRICS: MetricRecord(metrics)}  # type: ignore[arg-type]
    )
    return Message(content, reply_to=msg)


def packetgame_analytics(msg: Message, context: Context) -> Message:
    """Gate this node's live streams with the received predictor; report the outcome."""
    from edgecloud.capabilities.packetgame.predictor_records import from_arrays
    from edgecloud.packetgame import make_policy, run_online

    settings, node, root, cameras = _edge(context)
    common, config = settings.common, settings.section
    predictor = from_arrays(msg.content.array_records[ARRAYS], config.window)
    videos = _cameras(root, cameras)
    model, redundancy = _model(root, config.model), _redundancy(config.redundancy)
    references = [_reference(root, config.model, c, config.size) for c in cameras]
    costs = _costs(root, cameras)
    # budget: a fraction of decoding every arrived packet, per live round
    budget = config.budget * sum(_mean_cost(root, c, costs) for c in cameras)
    policy = make_policy(
        config.policy,
        len(videos),
        budget=budget,
        costs=costs,
        window=config.window,
        predictor=predictor,
        references=references,
        seed=common.seed,
    )
    result = run_online(
        videos,
        model,
        redundancy,
        policy,
        budget,
        costs,
        size=config.size,
        max_rounds=config.rounds_per_analytics,
        references=references,
        # a node's few streams may cost less than one I picture per round: the
        # bucket saves unused budget up to that, so every stream can start
        burst=budget + costs.intra,
    )
    metrics = {
        NUM_EXAMPLES: result.frames,
        k.FRAMES: result.frames,
        k.FRAMES_DECODED: result.frames_decoded,
        k.ACCURACY: result.accuracy,
        k.SPENT: result.spent,
        k.DECODE_ALL_COST: result.decode_all_cost,
        k.SAVED: result.saved,
        k.DECISIONS: int(result.log.active.sum()),
        k.DECISION_SECONDS: result.decision_seconds,
        k.LIVE_ROUNDS: result.rounds,
    }
    log(
        INFO,
        "packetgame: node %d served %d frames of cameras %s: accuracy %.3f, saved %.3f",
        node.partition_id,
        result.frames,
        list(cameras),
        result.accuracy,
        result.saved,
    )
    return Message(RecordDict({METRICS: MetricRecord(metrics)}), reply_to=msg)  # type: ignore[arg-type]


# ------------------------------------------------------------------ this node
def _edge(
    context: Context,
) -> tuple[RunSettings[PacketGameConfig], NodeConfig, Path, tuple[int, ...]]:
    """Settings, node facts, the testbed's root and this node's camera ids."""
    settings = load_client_settings(
        context.run_config, context.node_config, PacketGameConfig
    )
    config = settings.section
    node = NodeConfig.from_node_config(context.node_config)
    source = (
        "node config"
        if config.key_of("testbed") in context.node_config
        else "run-config"
    )
    root = config.testbed_path(source)
    return settings, node, root, node_cameras(root, node)


# ------------------------------------------------------------------ cached per process
# Simulation reuses a process for many messages (and nodes): the keys name the
# cameras, so nodes never share an entry they should not.
def _cameras(root: Path, cameras: tuple[int, ...]) -> list[CameraVideo]:
    from edgecloud.data.testbed import load_testbed

    testbed = load_testbed(root)
    return [testbed.camera(c) for c in cameras]


@functools.lru_cache(maxsize=8)
def _model(root: Path, name: str) -> FrameModel:
    from edgecloud.models.blackbox import BlackBoxModel

    return BlackBoxModel.load(root / MODELS_DIR / name)


def _redundancy(name: str) -> Redundancy:
    from edgecloud.packetgame import count_changed, event_present

    return {"count-changed": count_changed, "event-present": event_present}[name]


@functools.lru_cache(maxsize=32)
def _reference(
    root: Path, model: str, camera: int, size: tuple[int, int]
) -> npt.NDArray[np.int64]:
    from edgecloud.packetgame import reference_outputs

    return reference_outputs(_cameras(root, (camera,))[0], _model(root, model), size)


@functools.lru_cache(maxsize=8)
def _training_rows(
    root: Path,
    model: str,
    redundancy: str,
    window: int,
    cameras: tuple[int, ...],
    size: tuple[int, int],
    neutral: bool,
) -> tuple[FloatArray, BoolArray, FloatArray, FloatArray]:
    """``training_data`` of the node's cameras: its feedback log.

    ``neutral``: the contextual-only policy's rows (constant temporal input).
    """
    from edgecloud.packetgame import training_data

    return training_data(
        _cameras(root, cameras),
        _model(root, model),
        _redundancy(redundancy),
        window,
        size=size,
        neutral=neutral,
    )


@functools.lru_cache(maxsize=8)
def _costs(root: Path, cameras: tuple[int, ...]) -> DecodeCosts:
    from edgecloud.packetgame import calibrate_decode_costs

    return calibrate_decode_costs(_cameras(root, cameras), _CALIBRATION_PACKETS)


def _mean_cost(root: Path, camera: int, costs: DecodeCosts) -> float:
    """Mean calibrated cost of one packet of ``camera`` (decode-all per round)."""
    video = _cameras(root, (camera,))[0]
    types = [info.picture_type for info, _ in video.packets()]
    return float(costs.of(types).mean())
