"""The training loop of the FL baselines: Flower's ``start()`` plus run outputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from logging import INFO, WARNING

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from edgecloud.capabilities.fl.round_tracking import RoundTracker
from edgecloud.capabilities.fl.strategy_state import (
    export_strategy_state,
    restore_strategy_state,
)
from edgecloud.results import RoundRecord, RunHistory, RunRecorder
from edgecloud.workflow.keys import EVAL_ACCURACY, EVAL_LOSS, TRAIN_LOSS

# Centralized evaluation of the global model: arrays -> {"loss": .., "accuracy": ..}
CentralEvaluate = Callable[[ArrayRecord], Mapping[str, float]]
_SHOWN_ELSEWHERE = frozenset({TRAIN_LOSS, EVAL_LOSS, EVAL_ACCURACY})


def run_training(
    grid: Grid,
    strategy: Strategy,
    initial_arrays: ArrayRecord,
    recorder: RunRecorder,
    *,
    num_rounds: int,
    resume: bool,
    round_timeout: float,
    train_config: ConfigRecord,
    central_evaluate: CentralEvaluate | None,
) -> RunHistory:
    """Run ``num_rounds`` rounds of ``strategy``, writing outputs after every round.

    With ``resume``, continue after the latest checkpoint in the recorder's
    directory (global model, strategy state and history restored) so that the run
    ends with ``num_rounds`` completed rounds in total.
    """
    checkpoint = recorder.start(resume)
    offset = 0
    if checkpoint is not None:
        offset = checkpoint.round
        initial_arrays = ArrayRecord(
            {k: Array(np.asarray(v)) for k, v in checkpoint.arrays.items()}
        )
        restore_strategy_state(strategy, checkpoint.strategy_state)
    remaining = num_rounds - offset
    if remaining <= 0:
        log(WARNING, "all %d rounds already completed; nothing to run", num_rounds)
        return recorder.finish()

    tracker = RoundTracker(strategy, round_offset=offset)

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        rnd = server_round + offset
        if server_round == 0 and offset:
            return None  # the resumed model was evaluated before the interruption
        central = dict(central_evaluate(arrays)) if central_evaluate else {}
        record = RoundRecord(
            round=rnd,
            central_loss=central.get("loss"),
            central_accuracy=central.get("accuracy"),
        )
        if server_round == 0:
            recorder.record_round(record, None, {})
        else:
            stats = tracker.finish_round(rnd)
            record.train_loss = stats.train_metrics.get(TRAIN_LOSS)
            record.federated_loss = stats.evaluate_metrics.get(EVAL_LOSS)
            record.federated_accuracy = stats.evaluate_metrics.get(EVAL_ACCURACY)
            record.bytes_up = stats.traffic.bytes_up
            record.bytes_down = stats.traffic.bytes_down
            record.seconds, record.failures = stats.seconds, stats.failures
            record.train_replies = stats.train_replies
            record.extra = {
                k: v
                for k, v in stats.train_metrics.items()
                if k not in _SHOWN_ELSEWHERE
            }
            recorder.set_partitions(
                [tracker.partitions[p] for p in sorted(tracker.partitions)]
            )
            recorder.record_round(
                record,
                {k: a.numpy() for k, a in arrays.items()},
                export_strategy_state(strategy),
            )
        return MetricRecord(central) if central else None  # type: ignore[arg-type]

    log(INFO, "running rounds %d..%d of %d", offset + 1, num_rounds, num_rounds)
    try:
        tracker.start(
            grid=grid,
            initial_arrays=initial_arrays,
            num_rounds=remaining,
            timeout=round_timeout,
            train_config=train_config,
            evaluate_config=ConfigRecord(),
            evaluate_fn=evaluate_fn,
        )
    except BaseException:
        recorder.finish(status="failed")
        raise
    return recorder.finish()
