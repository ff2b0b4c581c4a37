"""The split-learning workflow on a fake grid: conversations, drops, aggregation.

The fake grid answers with the device handler itself, called in-process on each
node's own Context (no simulation engine); some tests then spoil a reply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from flwr.app import Array, ConfigRecord, Context, Message, RecordDict

from edgecloud.capabilities.split import keys as k
from edgecloud.capabilities.split.client import split_step
from edgecloud.capabilities.split.config import SplitConfig
from edgecloud.capabilities.split.server import ClientRound, SplitLearning
from edgecloud.capability import load_run_settings
from edgecloud.results import RunRecorder
from edgecloud.settings import RunSettings
from edgecloud.tasks import state_to_numpy
from edgecloud.tasks.split_steps import DeviceSide, TaskSplitOps
from edgecloud.workflow.run_setup import set_up_task
from tests.fakes import FakeGrid

pytestmark = pytest.mark.usefixtures("server_identity")
RUN_ID = 5
Spoil = Callable[[Message, Message], Message | None]  # (sent, reply) -> reply


def _settings(run_config: dict[str, Any], mode: str) -> RunSettings[SplitConfig]:
    config = {
        **run_config,
        "capability": "split",
        "split.mode": mode,
        "num-server-rounds": 1,
        "local-epochs": 1,
        "batch-size": 128,
    }
    settings = load_run_settings(config)
    assert isinstance(settings.section, SplitConfig)
    return settings  # type: ignore[return-value]


def _devices(
    settings: RunSettings[SplitConfig], nodes: list[int], spoil: Spoil | None = None
) -> FakeGrid:
    """A grid whose nodes run the real device handler on their own Context."""
    run_config = settings.to_run_config()
    contexts = {
        node: Context(
            run_id=RUN_ID,
            node_id=node,
            node_config={"partition-id": i, "num-partitions": len(nodes)},
            state=RecordDict(),
            run_config=dict(run_config),
        )
        for i, node in enumerate(nodes)
    }

    def answer(message: Message) -> Message | None:
        answered = split_step(message, contexts[message.metadata.dst_node_id])
        return spoil(message, answered) if spoil else answered

    return FakeGrid(answer, nodes)


def _run(settings: RunSettings[SplitConfig], grid: FakeGrid, out: Path) -> Any:
    setup = set_up_task(settings)
    ops = TaskSplitOps(
        setup.task,
        settings.section.lr,
        settings.common.momentum,
        setup.test_set,
        settings.common.batch_size,
    )
    workflow = SplitLearning(settings.section, settings.common, ops, RUN_ID)
    initial = state_to_numpy(setup.model)
    history = workflow.run(grid, initial, RunRecorder(out, {}))  # type: ignore[arg-type]
    return history, workflow, initial


@pytest.mark.parametrize("mode", ["split", "split-ushaped", "splitfed-v1"])
def test_a_round_trains_every_client_and_serves_inference(
    run_config: dict[str, Any], tmp_path: Path, mode: str
) -> None:
    # Prepare
    settings = _settings(run_config, mode)
    grid = _devices(settings, [11, 12])

    # Execute
    history, workflow, initial = _run(settings, grid, tmp_path)

    # Assert: both finished; sequential modes talk to one client at a time
    last = history.rounds[-1]
    assert last.train_replies == 2 and last.failures == 0
    assert last.extra["exchanges"] >= 4
    sizes = {len(batch) for batch in grid.sent}
    assert sizes == ({1, 2} if mode != "splitfed-v1" else {2})
    assert last.bytes_down > 0 and last.bytes_up > 0
    assert last.extra["split-inference-accuracy"] >= 0.0
    assert last.extra["split-inference-examples"] > 0
    changed = [
        key
        for key in initial
        if not np.array_equal(initial[key], workflow.global_state[key])
    ]
    assert any(key.startswith("front.") for key in changed)
    assert any(key.startswith("back.") for key in changed)


def _tamper_front(sent: Message, answered: Message) -> Message:
    """Node 12 changes its device weights after sealing their digest."""
    if sent.metadata.dst_node_id == 12 and k.FRONT in answered.content:
        record = answered.content.array_records[k.FRONT]
        first = next(iter(record))
        record[first] = Array(record[first].numpy() + 1.0)
    return answered


def _zero_steps(sent: Message, answered: Message) -> Message:
    """Node 12 claims its round has no steps."""
    control = answered.content.config_records[k.CONTROL]
    if sent.metadata.dst_node_id == 12 and k.NUM_STEPS in control:
        control[k.NUM_STEPS] = 0
    return answered


def _drop_frame(sent: Message, answered: Message) -> Message:
    """Node 12 answers its second message without the sealed frame."""
    control = answered.content.config_records[k.CONTROL]
    exchange = sent.content.config_records[k.CONTROL][k.EXCHANGE]
    if sent.metadata.dst_node_id == 12 and exchange == 1:
        del control[k.FRAME]
    return answered


def _vanish(sent: Message, answered: Message) -> Message | None:
    """Node 12 never answers its second message (timeout)."""
    exchange = sent.content.config_records[k.CONTROL][k.EXCHANGE]
    return None if sent.metadata.dst_node_id == 12 and exchange == 1 else answered


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        # weights changed outside the sealed frame: their digest does not match
        (_tamper_front, "sealed digest"),
        # nonsense control values are a malformed reply
        (_zero_steps, "0 steps"),
        # a reply without its frame is rejected by the channel
        (_drop_frame, "no frame"),
        # a lost reply
        (_vanish, "no reply"),
    ],
)
def test_a_bad_client_is_dropped_and_the_round_aggregates_the_other(
    run_config: dict[str, Any],
    tmp_path: Path,
    spoil: Spoil,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare
    settings = _settings(run_config, "splitfed-v1")
    logging.getLogger("flwr").addHandler(caplog.handler)

    # Execute
    try:
        history, workflow, _ = _run(
            settings, _devices(settings, [11, 12], spoil), tmp_path
        )
    finally:
        logging.getLogger("flwr").removeHandler(caplog.handler)

    # Assert
    last = history.rounds[-1]
    assert last.train_replies == 1 and last.failures == 1
    assert "dropping node 12" in caplog.text and reason in caplog.text
    assert 12 not in workflow._copies  # its half-trained server copy is forgotten


def test_a_malformed_start_reply_is_not_mistaken_for_a_bug(
    run_config: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare: node 12's start reply lacks its control record entirely
    def no_control(sent: Message, answered: Message) -> Message:
        if sent.metadata.dst_node_id == 12:
            return Message(RecordDict({"other": ConfigRecord({})}), reply_to=sent)
        return answered

    settings = _settings(run_config, "splitfed-v2")

    # Execute
    history, _, _ = _run(settings, _devices(settings, [11, 12], no_control), tmp_path)

    # Assert
    assert history.rounds[-1].failures == 1 and history.status == "completed"


def test_local_loss_trains_in_one_exchange_per_client_and_round(
    run_config: dict[str, Any], tmp_path: Path
) -> None:
    # Prepare
    settings = _settings(run_config, "splitfed-local-loss")
    grid = _devices(settings, [11, 12])

    # Execute
    history, workflow, initial = _run(settings, grid, tmp_path)

    # Assert: one exchange of both clients trained front, head and server part
    last = history.rounds[-1]
    assert last.train_replies == 2 and last.failures == 0
    assert last.extra["exchanges"] == 1
    assert len(grid.sent[0]) == 2  # both clients' session of the round at once
    assert last.train_loss is not None and last.bytes_up > last.bytes_down
    for part in ("front.", "back.", "aux."):
        assert any(
            not np.array_equal(initial.get(key), value)
            for key, value in workflow.global_state.items()
            if key.startswith(part)
        ), part


def _spoiled_uploads(
    change: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> Callable[..., Any]:
    """A device step whose smashed data / labels ``change`` spoils before sealing."""
    real = DeviceSide.local_loss_step

    def step(self: DeviceSide, *args: Any) -> tuple[np.ndarray, np.ndarray, float]:
        smashed, labels, loss = real(self, *args)
        return (*change(smashed, labels), loss)

    return step


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda a, y: (a, y + 10), "labels outside 0..9"),
        (lambda a, y: (a[:, :1], y), "smashed data is float32"),
        (lambda a, y: (a.astype(np.int32), y), "smashed data is int32"),
        (lambda a, y: (a, y.astype(np.float32)), "expected integers"),
    ],
    ids=["labels", "shape", "dtype", "label-dtype"],
)
def test_local_loss_drops_a_client_whose_uploads_do_not_fit_the_model(
    run_config: dict[str, Any],
    tmp_path: Path,
    change: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare: node 12's device seals well-formed frames of unusable data
    settings = _settings(run_config, "splitfed-local-loss")
    grid = _devices(settings, [11, 12])
    honest = grid.answer

    def answer(message: Message) -> Message | None:
        if message.metadata.dst_node_id != 12:
            return honest(message)
        with patch.object(DeviceSide, "local_loss_step", _spoiled_uploads(change)):
            return honest(message)

    grid.answer = answer
    logging.getLogger("flwr").addHandler(caplog.handler)

    # Execute
    try:
        history, _, _ = _run(settings, grid, tmp_path)
    finally:
        logging.getLogger("flwr").removeHandler(caplog.handler)

    # Assert: dropped before the server part saw any of it
    last = history.rounds[-1]
    assert last.train_replies == 1 and last.failures == 1
    assert "dropping node 12" in caplog.text and reason in caplog.text


class _RecordingPart:
    """A server part that only notes which client each batch came from."""

    def __init__(self) -> None:
        self.order: list[int] = []

    def loss_step(self, activations: np.ndarray, labels: np.ndarray) -> Any:
        self.order.append(int(labels[0]))
        return None, float(labels[0])


def test_local_loss_server_interleaves_the_clients_batches(
    run_config: dict[str, Any],
) -> None:
    # Prepare: client 1 uploaded three batches, client 2 two (labels name them)
    settings = _settings(run_config, "splitfed-local-loss")
    setup = set_up_task(settings)
    ops = TaskSplitOps(setup.task, 0.1, 0.9, setup.test_set, 16)
    workflow = SplitLearning(settings.section, settings.common, ops, RUN_ID)
    part = _RecordingPart()
    workflow._shared = part  # type: ignore[assignment]
    a = np.zeros((1, 4), np.float32)
    results = [
        ClientRound(node, {}, 1, [], [(a, np.array([node]))] * batches)
        for node, batches in ((1, 3), (2, 2))
    ]

    # Execute
    workflow._train_on_uploads(results)

    # Assert: round-robin, every batch once, losses per client, uploads released
    assert part.order == [1, 2, 1, 2, 1]
    assert [r.losses for r in results] == [[1.0, 1.0, 1.0], [2.0, 2.0]]
    assert all(r.uploads == [] for r in results)
