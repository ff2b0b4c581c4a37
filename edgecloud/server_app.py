"""Flower ServerApp glue: run_config -> config -> task + strategy -> training run."""

from __future__ import annotations

from logging import INFO
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from edgecloud.config import RunConfig
from edgecloud.protocol import REPORT_INITIAL_LOSS
from edgecloud.results import RunRecorder
from edgecloud.stip.runtime import StipServer
from edgecloud.strategies import (
    SECURE_INFERENCE,
    SPLIT_NAMES,
    SecureInference,
    SplitLearning,
    build_baseline,
    wrap_with_dp,
)
from edgecloud.strategies.round_tracking import aggregate_scalar_metrics
from edgecloud.strategies.training_run import run_training, wait_for_nodes
from edgecloud.strategies.update_quantization import QuantizedUpdates
from edgecloud.tasks import get_task
from edgecloud.tasks.split_steps import TaskSplitOps

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Validate the run config, then train the task with the chosen strategy."""
    cfg = RunConfig.from_run_config(context.run_config)  # fails before any round
    log(INFO, "edgecloud run config: %s", cfg.to_run_config())
    if cfg.strategy == SECURE_INFERENCE:
        server = StipServer(Path(cfg.stip_server_bundle).expanduser())
        wait_for_nodes(grid, cfg.min_available_nodes, cfg.round_timeout)
        rounds = cfg.stip_max_new_tokens + 1 if server.is_generator else 2
        SecureInference(server, rounds, cfg.round_timeout, cfg.output_path).run(
            grid, sorted(grid.get_node_ids())
        )
        return
    task = get_task(cfg.task)
    torch.manual_seed(cfg.seed)
    model = task.build_model()
    test_set = task.load_dataset(
        cfg.resolved_dataset, False, cfg.data_path, cfg.data_download
    )

    recorder = RunRecorder(cfg.output_path, cfg.to_run_config())
    if cfg.strategy in SPLIT_NAMES:
        ops = TaskSplitOps(task, cfg.split_lr, cfg.momentum, test_set, cfg.batch_size)
        split = SplitLearning(cfg.split_params(), ops, run_id=context.run_id)
        state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        split.run(grid, state, recorder, resume=cfg.resume)
        return
    num_nodes = wait_for_nodes(grid, cfg.min_available_nodes, cfg.round_timeout)
    strategy = build_baseline(
        cfg.strategy, cfg.baseline_params(), aggregate_scalar_metrics
    )
    strategy = wrap_with_dp(
        strategy, cfg.dp_params(), cfg.dp_sampled_clients(num_nodes)
    )
    if cfg.update_quantization_bits:
        strategy = QuantizedUpdates(strategy, cfg.update_quantization_bits)

    def central_evaluate(arrays: ArrayRecord) -> dict[str, float]:
        model.load_state_dict(arrays.to_torch_state_dict())
        result = task.evaluate(model, test_set, cfg.batch_size)
        return {"loss": result.loss, "accuracy": result.accuracy}

    run_training(
        grid,
        strategy,
        ArrayRecord(model.state_dict()),
        recorder,
        num_rounds=cfg.num_server_rounds,
        resume=cfg.resume,
        round_timeout=cfg.round_timeout,
        train_config=ConfigRecord({REPORT_INITIAL_LOSS: cfg.strategy == "qfedavg"}),
        central_evaluate=central_evaluate,
    )
