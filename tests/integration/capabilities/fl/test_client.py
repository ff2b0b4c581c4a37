"""FL client handlers and their mods, called with real Messages and Contexts."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from edgecloud.capabilities.fl.client import evaluate, train
from edgecloud.capabilities.fl.keys import (
    REPORT_INITIAL_LOSS,
    UPDATE_QUANTIZATION_BITS,
)
from edgecloud.capabilities.fl.update_quantization import decode_update
from edgecloud.client_app import app
from edgecloud.exceptions import ConfigError
from edgecloud.tasks import get_task
from tests.conftest import metadata

NODE = {"partition-id": 1, "num-partitions": 4}


def _context(
    run_config: dict[str, Any], node_config: dict[str, Any] | None = None
) -> Context:
    return Context(
        run_id=1,
        node_id=7,
        node_config=dict(node_config or NODE),
        state=RecordDict(),
        run_config=dict(run_config),
    )


def _global_arrays() -> ArrayRecord:
    torch.manual_seed(0)
    return ArrayRecord(get_task("digits-cnn").build_model().state_dict())


def _message(kind: str, config: dict[str, Any] | None = None) -> Message:
    content = RecordDict(
        {
            "arrays": _global_arrays(),
            "config": ConfigRecord({"server-round": 1, **(config or {})}),
        }
    )
    return Message(metadata=metadata(0, kind), content=content)


def _update_norm(reply: Message) -> float:
    sent = _global_arrays().to_numpy_ndarrays()
    got = reply.content.array_records["arrays"].to_numpy_ndarrays()
    return float(
        np.sqrt(sum(np.sum((g - s) ** 2) for g, s in zip(got, sent, strict=True)))
    )


def test_train_reply_has_one_arrayrecord_and_the_metrics_strategies_need(
    run_config: dict[str, Any],
) -> None:
    # Execute
    reply = train(_message("train"), _context(run_config))

    # Assert
    assert list(reply.content.array_records) == ["arrays"]
    metrics = reply.content.metric_records["metrics"]
    assert metrics["num-examples"] > 0 and metrics["partition-id"] == 1
    assert sum(metrics["label-histogram"]) > metrics["num-examples"]  # + validation
    assert "initial-loss" not in metrics
    assert _update_norm(reply) > 0


def test_train_reports_initial_loss_when_qfedavg_asks(
    run_config: dict[str, Any],
) -> None:
    reply = train(_message("train", {REPORT_INITIAL_LOSS: True}), _context(run_config))
    assert reply.content.metric_records["metrics"]["initial-loss"] > 2.0  # untrained


def test_evaluate_reply(run_config: dict[str, Any]) -> None:
    # Execute
    reply = evaluate(_message("evaluate"), _context(run_config))

    # Assert
    metrics = reply.content.metric_records["metrics"]
    assert 0.0 <= metrics["eval-accuracy"] <= 1.0 and metrics["num-examples"] > 0
    assert not reply.content.array_records


def test_bad_node_config_fails_with_its_key(run_config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="partition-id"):
        train(_message("train"), _context(run_config, {"num-partitions": 2}))


def test_bad_run_config_fails_with_its_key(run_config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="'batch-size' has value 0"):
        train(_message("train"), _context({**run_config, "batch-size": 0}))
    with pytest.raises(ConfigError, match=re.escape("'fl.lr' has value 0.0")):
        train(_message("train"), _context({**run_config, "fl.lr": 0.0}))


def test_quantization_mod_encodes_the_update_the_server_can_decode(
    run_config: dict[str, Any],
) -> None:
    # Prepare
    plain = app(_message("train"), _context(run_config))

    # Execute: same seed, same data, but the server asks for 8-bit updates
    quantized = app(
        _message("train", {UPDATE_QUANTIZATION_BITS: 8}), _context(run_config)
    )

    # Assert
    arrays = quantized.content.array_records["arrays"]
    assert {arrays[k].dtype for k in arrays} == {"int8"}
    decoded = decode_update(
        _global_arrays(), arrays, quantized.content.config_records["quantization"]
    )
    for got, want in zip(
        decoded.to_numpy_ndarrays(),
        plain.content.array_records["arrays"].to_numpy_ndarrays(),
        strict=True,
    ):
        assert np.abs(got - want).max() < 0.01
    assert (
        arrays.count_bytes() < 0.3 * plain.content.array_records["arrays"].count_bytes()
    )


def test_client_side_fixed_clipping_bounds_the_update(
    run_config: dict[str, Any],
) -> None:
    # Prepare
    cfg = {**run_config, "fl.dp-mode": "client-fixed"}
    unclipped = _update_norm(app(_message("train"), _context(run_config)))

    # Execute
    reply = app(_message("train", {KEY_CLIPPING_NORM: 0.5}), _context(cfg))

    # Assert
    assert unclipped > 0.5
    assert _update_norm(reply) == pytest.approx(0.5, rel=1e-4)


def test_local_dp_clips_and_noises_the_update(run_config: dict[str, Any]) -> None:
    # Prepare
    cfg = {
        **run_config,
        "fl.dp-mode": "local",
        "fl.dp-clipping-norm": 0.5,
        "fl.dp-epsilon": 1.0,
    }

    # Execute
    first = app(_message("train"), _context(cfg))
    second = app(_message("train"), _context(cfg))

    # Assert: clipped to 0.5, then noised: two identical trainings now differ
    assert _update_norm(first) != pytest.approx(_update_norm(second))
    assert _update_norm(first) > 0.5
