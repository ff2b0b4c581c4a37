"""The FL capability's server side: a Flower strategy, wrapped, run round by round.

The strategy is one of Flower's twelve (:mod:`.baselines`); Flower's central-DP
wrappers (:mod:`.differential_privacy`) and the quantized-update decoder
(:mod:`.update_quantization`) wrap it; :mod:`.training_run` runs ``Strategy.start()``
with per-round outputs, checkpoints and resume.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from edgecloud.capabilities.fl.baselines import build_baseline
from edgecloud.capabilities.fl.config import FlConfig
from edgecloud.capabilities.fl.differential_privacy import wrap_with_dp
from edgecloud.capabilities.fl.round_tracking import aggregate_scalar_metrics
from edgecloud.capabilities.fl.training_run import run_training
from edgecloud.capabilities.fl.update_quantization import QuantizedUpdates
from edgecloud.settings import RunSettings
from edgecloud.workflow.nodes import wait_for_nodes
from edgecloud.workflow.run_setup import make_recorder, set_up_task


def build_strategy(
    config: FlConfig, fraction_train: float, min_nodes: int, connected: int
) -> Strategy:
    """The configured strategy with its DP and quantization wrappers."""
    strategy = build_baseline(
        config,
        fraction_train=fraction_train,
        min_available_nodes=min_nodes,
        train_metrics_aggr_fn=aggregate_scalar_metrics,
    )
    strategy = wrap_with_dp(
        strategy, config, config.dp_sampled_clients(fraction_train, connected)
    )
    if config.update_quantization_bits:
        strategy = QuantizedUpdates(strategy, config.update_quantization_bits)
    return strategy


def serve(grid: Grid, context: Context, settings: RunSettings[FlConfig]) -> None:
    """Train the task with the configured strategy for ``num-server-rounds``."""
    common, config = settings.common, settings.section
    setup = set_up_task(settings)
    connected = len(
        wait_for_nodes(grid, common.min_available_nodes, common.round_timeout)
    )
    strategy = build_strategy(
        config, common.fraction_train, common.min_available_nodes, connected
    )

    def central_evaluate(arrays: ArrayRecord) -> dict[str, float]:
        setup.model.load_state_dict(arrays.to_torch_state_dict())
        result = setup.task.evaluate(setup.model, setup.test_set, common.batch_size)
        return {"loss": result.loss, "accuracy": result.accuracy}

    label = f"fl: {config.strategy} on {common.task} ({common.partitioning})"
    run_training(
        grid,
        strategy,
        ArrayRecord(setup.model.state_dict()),
        make_recorder(settings, label),
        num_rounds=common.num_server_rounds,
        resume=common.resume,
        round_timeout=common.round_timeout,
        train_config=ConfigRecord(),
        central_evaluate=central_evaluate,
    )
