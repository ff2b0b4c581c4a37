"""InFi's client handlers on the tiny testbed, with real Messages and Contexts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

from edgecloud.capabilities.infi import keys as k
from edgecloud.capabilities.infi.client import infi_evaluate, infi_train
from edgecloud.capabilities.infi.filter_records import build_filter, to_arrays
from edgecloud.client_app import app
from tests.conftest import metadata

SIZE = (40, 30)
ONE_NODE = {"partition-id": 0, "num-partitions": 1}  # both training cameras


@pytest.fixture
def node_run_config(run_config: dict[str, Any], infi_testbed: Path) -> dict[str, Any]:
    """Every frame of the tiny testbed, small filter inputs, one epoch per round."""
    return {
        **run_config,
        "capability": "infi",
        "infi.testbed": str(infi_testbed),
        "infi.task": "person-count",
        "infi.frame-stride": 1,
        "infi.frame-size": f"{SIZE[0]}x{SIZE[1]}",
        "infi.local-epochs": 1,
    }


def _context(run_config: dict[str, Any], node: dict[str, Any] | None = None) -> Context:
    return Context(
        run_id=1,
        node_id=7,
        node_config=dict(node or ONE_NODE),
        state=RecordDict(),
        run_config=run_config,
    )


def _message(
    kind: str, server_round: int = 1, own: bool = False, session: str = "a"
) -> Message:
    arrays = ArrayRecord() if own else to_arrays(build_filter(SIZE, seed=42))
    config = {"server-round": server_round, k.OWN_FILTER: own, k.SESSION: session}
    content = RecordDict({"arrays": arrays, "config": ConfigRecord(config)})  # type: ignore[arg-type]
    return Message(metadata=metadata(0, kind), content=content)


def test_the_client_app_registers_the_infi_handlers() -> None:
    assert {k.MSG_TRAIN, k.MSG_EVALUATE} <= set(app._registered_funcs)


def test_federated_train_returns_the_fitted_filter_and_its_frames(
    node_run_config: dict[str, Any],
) -> None:
    # Prepare
    message = _message(k.MSG_TRAIN)
    sent = message.content.array_records["arrays"].to_torch_state_dict()

    # Execute
    reply = infi_train(message, _context(node_run_config))

    # Assert: per camera 30 training frames, the last 6 held back: 2 x 24 fit
    metrics = reply.content.metric_records["metrics"]
    assert metrics["num-examples"] == 48
    assert metrics["train-loss"] > 0
    assert 0.0 <= metrics[k.TRAIN_REDUNDANT_SHARE] <= 1.0
    got = reply.content.array_records["arrays"].to_torch_state_dict()
    assert got.keys() == sent.keys()
    assert any(not torch.equal(got[n], sent[n]) for n in sent)


def test_local_mode_keeps_the_filter_per_session_and_sends_none(
    node_run_config: dict[str, Any],
) -> None:
    # Prepare
    context = _context(node_run_config)

    # Execute: two rounds of session a, then round 1 of a new session b
    first = infi_train(_message(k.MSG_TRAIN, 1, own=True), context)
    kept = context.state.array_records[k.STATE_FILTER].to_torch_state_dict()
    second = infi_train(_message(k.MSG_TRAIN, 2, own=True), context)
    fresh = infi_train(_message(k.MSG_TRAIN, 1, own=True, session="b"), context)

    # Assert: no weights leave the node; round 2 went on from round 1's filter;
    # session b restarted from the initial weights (same seed: same loss)
    assert not first.content.array_records and not second.content.array_records
    later = context.state.array_records[k.STATE_FILTER].to_torch_state_dict()
    assert later.keys() == kept.keys()
    loss = [r.content.metric_records["metrics"]["train-loss"] for r in (first, fresh)]
    assert loss[0] == pytest.approx(loss[1])
    assert context.state.config_records[k.STATE_SESSION][k.SESSION] == "b"


def test_evaluate_reports_shares_and_the_optimum_on_the_test_part(
    node_run_config: dict[str, Any],
) -> None:
    # Execute
    reply = infi_evaluate(_message(k.MSG_EVALUATE), _context(node_run_config))

    # Assert: the later 30 frames of each camera
    metrics = reply.content.metric_records["metrics"]
    assert metrics["num-examples"] == 60 and metrics["partition-id"] == 0
    assert metrics[k.NUM_CAMERAS] == 2
    for key in k.EVALUATION_KEYS:
        assert 0.0 <= metrics[key] <= 1.0, key
    r_n = metrics[k.REDUNDANT_SHARE]
    assert 0.0 < r_n < 1.0  # both labels occur in the tiny testbed
    assert metrics[k.OPTIMUM_FILTER_RATE] == pytest.approx(min(1.0, 0.1 + r_n))
    assert metrics[k.VALIDATION_ACCURACY] >= 0.9


def test_a_node_serves_the_cameras_of_its_node_config(
    node_run_config: dict[str, Any],
) -> None:
    # Prepare
    node = {**ONE_NODE, "cameras": "1"}

    # Execute
    reply = infi_evaluate(_message(k.MSG_EVALUATE), _context(node_run_config, node))

    # Assert
    metrics = reply.content.metric_records["metrics"]
    assert metrics["num-examples"] == 30 and metrics[k.NUM_CAMERAS] == 1
