"""The FL strategy builder and training run on a fake grid (fabricated replies).

Every one of the twelve strategies, and the DP / quantization wrappers, runs a
round through Flower's own ``Strategy.start()`` against clients fabricated here,
without the simulation engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
    RecordDict,
)

from edgecloud.capabilities.fl import keys as fk
from edgecloud.capabilities.fl.baselines import BASELINE_NAMES
from edgecloud.capabilities.fl.config import FlConfig
from edgecloud.capabilities.fl.server import build_strategy
from edgecloud.capabilities.fl.training_run import run_training
from edgecloud.capabilities.fl.update_quantization import encode_update
from edgecloud.capability import load_run_settings
from edgecloud.results import RunRecorder
from edgecloud.workflow.keys import ARRAYS, CONFIG, METRICS
from tests.fakes import FakeGrid, reply

pytestmark = pytest.mark.usefixtures("server_identity")
NODES = [21, 22, 23, 24]
INITIAL = {"w": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)}


def _initial() -> ArrayRecord:
    return ArrayRecord({name: Array(v) for name, v in INITIAL.items()})


def _fabricated_client(seen_configs: list[dict[str, Any]]) -> Any:
    """Clients that move every weight by +0.1 * (their index + 1)."""

    def answer(message: Message) -> Message:
        node = NODES.index(message.metadata.dst_node_id)
        config = dict(message.content.config_records[CONFIG])
        seen_configs.append(config)
        if message.metadata.message_type == "evaluate":
            metrics = {"num-examples": 10, "eval-loss": 0.5, "eval-accuracy": 0.8}
            return reply(message, RecordDict({METRICS: MetricRecord(metrics)}))
        received = message.content.array_records[ARRAYS]
        trained = ArrayRecord(
            {
                name: Array(np.asarray(a.numpy() + 0.1 * (node + 1), np.float32))
                for name, a in received.items()
            }
        )
        content = RecordDict(
            {
                ARRAYS: trained,
                METRICS: MetricRecord(
                    {
                        "num-examples": 10 * (node + 1),
                        "train-loss": 1.0 / (node + 1),
                        fk.INITIAL_LOSS: 2.0,
                        "partition-id": node,
                        "label-histogram": [node, 1],
                    }
                ),
            }
        )
        bits = config.get(fk.UPDATE_QUANTIZATION_BITS)
        if bits:  # what quantize_update_mod does on a real client
            arrays, quantization = encode_update(received, trained, int(bits))
            content[ARRAYS], content[fk.QUANTIZATION] = arrays, quantization
        return reply(message, content)

    return answer


def _config(run_config: dict[str, Any], **changes: Any) -> FlConfig:
    section = load_run_settings({**run_config, **changes}).section
    assert isinstance(section, FlConfig)
    return section


CASES = {name: {"fl.strategy": name} for name in BASELINE_NAMES} | {
    "fedavg+dp-server-fixed": {"fl.dp-mode": "server-fixed"},
    "fedavg+dp-server-adaptive": {"fl.dp-mode": "server-adaptive"},
    "fedadam+quantized-8": {
        "fl.strategy": "fedadam",
        "fl.update-quantization-bits": 8,
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_strategy_runs_a_round_on_fabricated_replies(
    run_config: dict[str, Any], tmp_path: Path, case: str
) -> None:
    # Prepare
    config = _config(run_config, **CASES[case])
    strategy = build_strategy(config, 1.0, len(NODES), len(NODES))
    seen: list[dict[str, Any]] = []
    grid = FakeGrid(_fabricated_client(seen), NODES)
    recorder = RunRecorder(tmp_path, {"case": case})

    # Execute
    history = run_training(
        grid,  # type: ignore[arg-type]
        strategy,
        _initial(),
        recorder,
        num_rounds=1,
        resume=False,
        round_timeout=10.0,
        train_config=ConfigRecord(),
        central_evaluate=lambda arrays: {"loss": 1.0, "accuracy": 0.5},
    )

    # Assert: one round, every client trained, the global model moved
    assert history.status == "completed" and history.completed_rounds == 1
    last = history.rounds[-1]
    assert last.train_replies == len(NODES) and last.failures == 0
    assert last.bytes_down > 0 and last.bytes_up > 0
    assert {p["partition-id"] for p in history.partitions} == {0, 1, 2, 3}
    assert (tmp_path / "checkpoints" / "round-0001.pt").is_file()
    train_configs = [c for c in seen if "server-round" in c and len(c) > 1]
    if config.strategy == "fedprox":
        assert all(c[fk.PROXIMAL_MU] == config.proximal_mu for c in train_configs)
    if config.strategy == "qfedavg":
        assert all(c[fk.REPORT_INITIAL_LOSS] is True for c in train_configs)
    if config.update_quantization_bits:
        assert last.extra[fk.QUANTIZED_BYTES] < last.extra[fk.FULL_PRECISION_BYTES]


def test_only_qfedavg_asks_for_the_initial_loss(
    run_config: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare
    seen: list[dict[str, Any]] = []
    strategy = build_strategy(_config(run_config), 1.0, 4, 4)

    # Execute
    run_training(
        FakeGrid(_fabricated_client(seen), NODES),  # type: ignore[arg-type]
        strategy,
        _initial(),
        RunRecorder(tmp_path, {}),
        num_rounds=1,
        resume=False,
        round_timeout=10.0,
        train_config=ConfigRecord(),
        central_evaluate=None,
    )

    # Assert
    assert seen and not any(fk.REPORT_INITIAL_LOSS in c for c in seen)
