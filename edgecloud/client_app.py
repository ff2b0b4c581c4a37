"""Flower ClientApp glue: train / evaluate messages -> task calls on local data."""

from __future__ import annotations

from typing import cast

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from edgecloud import protocol as p
from edgecloud.client_data import load_node_data
from edgecloud.client_split import split_step
from edgecloud.client_stip import stip_step
from edgecloud.config import NodeConfig, RunConfig
from edgecloud.strategies import make_dp_client_mod
from edgecloud.strategies.update_quantization import quantize_update_mod
from edgecloud.tasks import ClientData, Task, TrainSettings, get_task

# mods[0] is outermost: quantization encodes the reply after DP clipping ran.
app = ClientApp(
    mods=[
        quantize_update_mod,
        make_dp_client_mod(
            lambda ctx: RunConfig.from_run_config(ctx.run_config).dp_params()
        ),
    ]
)


app.train("split_step")(split_step)  # protocol.MSG_SPLIT_STEP
app.query("stip_step")(stip_step)  # protocol.MSG_STIP_STEP


def _setup(
    msg: Message, context: Context
) -> tuple[RunConfig, Task, ClientData, nn.Module]:
    """Validate configs, load this node's partition and the received global model."""
    cfg = RunConfig.from_run_config(context.run_config)
    node = NodeConfig.from_node_config(context.node_config)
    task = get_task(cfg.task)
    data = load_node_data(cfg, node)
    model = task.build_model()
    model.load_state_dict(msg.content.array_records[p.ARRAYS].to_torch_state_dict())
    return cfg, task, data, model


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model locally; reply with weights and metrics."""
    cfg, task, data, model = _setup(msg, context)
    config = msg.content.config_records[p.CONFIG]
    server_round = int(cast(int, config.get(p.SERVER_ROUND, 0)))
    settings = TrainSettings(
        epochs=cfg.local_epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        momentum=cfg.momentum,
        seed=cfg.seed + 7919 * server_round + data.partition_id,
        proximal_mu=float(cast(float, config.get(p.PROXIMAL_MU, 0.0))),
        report_initial_loss=bool(config.get(p.REPORT_INITIAL_LOSS, False)),
    )
    result = task.train(model, data.train, settings)
    metrics: dict[str, int | float | list[int]] = {
        p.NUM_EXAMPLES: result.num_examples,
        p.TRAIN_LOSS: result.train_loss,
        p.TRAIN_SECONDS: result.seconds,
        p.PARTITION_ID: data.partition_id,
        p.LABEL_HISTOGRAM: data.label_histogram,
    }
    if result.initial_loss is not None:
        metrics[p.INITIAL_LOSS] = result.initial_loss
    content = RecordDict(
        {p.ARRAYS: ArrayRecord(model.state_dict()), p.METRICS: MetricRecord(metrics)}  # type: ignore[arg-type]
    )
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the local validation split."""
    cfg, task, data, model = _setup(msg, context)
    result = task.evaluate(model, data.val, cfg.batch_size)
    metrics = {
        p.NUM_EXAMPLES: result.num_examples,
        p.EVAL_LOSS: result.loss,
        p.EVAL_ACCURACY: result.accuracy,
    }
    return Message(RecordDict({p.METRICS: MetricRecord(metrics)}), reply_to=msg)  # type: ignore[arg-type]
