"""The FL capability's client handlers: local training and evaluation on this node.

The DP mod and the quantization mod attach to the ``train`` handler only:
``quantize_update_mod`` first (outermost), so it encodes the reply after DP clipped it.
"""

from __future__ import annotations

from typing import cast

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from edgecloud.capabilities.fl.config import FlConfig
from edgecloud.capabilities.fl.differential_privacy import make_dp_client_mod
from edgecloud.capabilities.fl.keys import (
    INITIAL_LOSS,
    PROXIMAL_MU,
    REPORT_INITIAL_LOSS,
)
from edgecloud.capabilities.fl.update_quantization import quantize_update_mod
from edgecloud.settings import NodeConfig, RunSettings, load_client_settings
from edgecloud.tasks import ClientData, TrainSettings
from edgecloud.workflow.client_data import load_node_data
from edgecloud.workflow.keys import (
    ARRAYS,
    CONFIG,
    EVAL_ACCURACY,
    EVAL_LOSS,
    LABEL_HISTOGRAM,
    METRICS,
    NUM_EXAMPLES,
    PARTITION_ID,
    SERVER_ROUND,
    TRAIN_LOSS,
    TRAIN_SECONDS,
)
from edgecloud.workflow.seeds import client_round_seed


def register(app: ClientApp) -> None:
    """Register ``train`` (with the DP and quantization mods) and ``evaluate``."""
    app.train(mods=[quantize_update_mod, make_dp_client_mod(_fl_config)])(train)
    app.evaluate()(evaluate)


def _settings(context: Context) -> RunSettings[FlConfig]:
    return load_client_settings(context.run_config, context.node_config, FlConfig)


def _fl_config(context: Context) -> FlConfig:
    return _settings(context).section


def _setup(
    msg: Message, context: Context
) -> tuple[RunSettings[FlConfig], ClientData, nn.Module]:
    """Validate configs, load this node's partition and the received global model."""
    settings = _settings(context)
    node = NodeConfig.from_node_config(context.node_config)
    data = load_node_data(settings.common, node)
    model = settings.common.task_plugin.build_model()
    model.load_state_dict(msg.content.array_records[ARRAYS].to_torch_state_dict())
    return settings, data, model


def train(msg: Message, context: Context) -> Message:
    """Train the received model locally; reply with weights and metrics."""
    settings, data, model = _setup(msg, context)
    common = settings.common
    config = msg.content.config_records[CONFIG]
    server_round = int(cast(int, config.get(SERVER_ROUND, 0)))
    train_settings = TrainSettings(
        epochs=common.local_epochs,
        batch_size=common.batch_size,
        lr=settings.section.lr,
        momentum=common.momentum,
        seed=client_round_seed(common.seed, server_round, data.partition_id),
        proximal_mu=float(cast(float, config.get(PROXIMAL_MU, 0.0))),
        report_initial_loss=bool(config.get(REPORT_INITIAL_LOSS, False)),
    )
    result = common.task_plugin.train(model, data.train, train_settings)
    metrics: dict[str, int | float | list[int]] = {
        NUM_EXAMPLES: result.num_examples,
        TRAIN_LOSS: result.train_loss,
        TRAIN_SECONDS: result.seconds,
        PARTITION_ID: data.partition_id,
        LABEL_HISTOGRAM: data.label_histogram,
    }
    if result.initial_loss is not None:
        metrics[INITIAL_LOSS] = result.initial_loss
    content = RecordDict(
        {ARRAYS: ArrayRecord(model.state_dict()), METRICS: MetricRecord(metrics)}  # type: ignore[arg-type]
    )
    return Message(content, reply_to=msg)


def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the local validation split."""
    settings, data, model = _setup(msg, context)
    result = settings.common.task_plugin.evaluate(
        model, data.val, settings.common.batch_size
    )
    metrics = {
        NUM_EXAMPLES: result.num_examples,
        EVAL_LOSS: result.loss,
        EVAL_ACCURACY: result.accuracy,
    }
    return Message(RecordDict({METRICS: MetricRecord(metrics)}), reply_to=msg)  # type: ignore[arg-type]
