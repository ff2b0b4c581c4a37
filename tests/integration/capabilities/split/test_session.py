"""Split learning over streamed sessions: the real endpoint, the real device handler.

The workflow runs in-process on a fake grid whose nodes answer with the real
handlers (``split_session`` in a thread per session message, ``split_step`` for
fallback messages); the stream is the real gRPC endpoint with TLS on 127.0.0.1.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.superlink.grid import InMemoryGrid

from edgecloud.capabilities.split import keys as k
from edgecloud.capabilities.split.client import split_session, split_step
from edgecloud.capabilities.split.config import SplitConfig
from edgecloud.capabilities.split.server import SplitLearning
from edgecloud.capability import load_run_settings
from edgecloud.deploy.certificates import generate_tls
from edgecloud.results import RunHistory, RunRecorder
from edgecloud.settings import RunSettings
from edgecloud.tasks import state_to_numpy
from edgecloud.tasks.split_steps import TaskSplitOps
from edgecloud.transport import (
    EndpointUnreachable,
    SessionClient,
    SessionRefused,
    Ticket,
    TicketError,
)
from edgecloud.transport.ticket import KEY_ENDPOINT
from edgecloud.workflow.run_setup import set_up_task
from edgecloud.workflow.stream import SESSION, StreamEndpoint, open_sessions
from tests.fakes import FakeGrid

pytestmark = pytest.mark.usefixtures("server_identity")
RUN_ID = 9
NODES = [11, 12]
# (message, context) -> reply: how node 12 answers a session message
Device = Callable[[Message, Context], Message]


def _settings(
    run_config: dict[str, Any], mode: str, transport: str, **extra: Any
) -> RunSettings[SplitConfig]:
    settings = load_run_settings(
        {
            **run_config,
            "capability": "split",
            "split.mode": mode,
            "split.transport": transport,
            "split.stream-connect-timeout": 20.0,
            "num-server-rounds": 1,
            "local-epochs": 1,
            "batch-size": 128,
            **extra,
        }
    )
    assert isinstance(settings.section, SplitConfig)
    return settings  # type: ignore[return-value]


def _contexts(
    settings: RunSettings[SplitConfig], node_config: dict[str, Any] | None = None
) -> dict[int, Context]:
    return {
        node: Context(
            run_id=RUN_ID,
            node_id=node,
            node_config={
                "partition-id": i,
                "num-partitions": len(NODES),
                **(node_config or {}),
            },
            state=RecordDict(),
            run_config=dict(settings.to_run_config()),
        )
        for i, node in enumerate(NODES)
    }


def _run(
    settings: RunSettings[SplitConfig],
    out: Path,
    node_12: Device | None = None,
) -> tuple[RunHistory, dict[str, Any], dict[int, Context]]:
    contexts = _contexts(settings)

    def answer(message: Message) -> Message | None:
        node = message.metadata.dst_node_id
        handler = (
            split_session
            if message.metadata.message_type == k.MSG_SESSION
            else split_step
        )
        if node == 12 and node_12 is not None and handler is split_session:
            return node_12(message, contexts[node])
        return handler(message, contexts[node])

    grid = FakeGrid(answer, NODES)
    setup = set_up_task(settings)
    common, config = settings.common, settings.section
    ops = TaskSplitOps(
        setup.task, config.lr, common.momentum, setup.test_set, common.batch_size
    )
    initial = state_to_numpy(setup.model)
    if config.local_loss:
        initial |= ops.auxiliary_state()
    endpoint = StreamEndpoint(config) if config.transport != "messages" else None
    try:
        if endpoint is not None:
            endpoint.__enter__()
        workflow = SplitLearning(config, common, ops, RUN_ID, endpoint)
        history = workflow.run(grid, initial, RunRecorder(out, {}))  # type: ignore[arg-type]
    finally:
        if endpoint is not None:
            endpoint.__exit__(None, None, None)
        grid.join()
    return history, workflow.global_state, contexts


@pytest.mark.parametrize(
    "mode",
    ["split", "split-ushaped", "splitfed-v1", "splitfed-v2", "splitfed-local-loss"],
)
def test_stream_gives_the_same_model_and_metrics_as_messages(
    run_config: dict[str, Any], tmp_path: Path, mode: str
) -> None:
    # Execute: the same round over messages and over streamed sessions
    over_messages, by_messages, _ = _run(
        _settings(run_config, mode, "messages"), tmp_path / "m"
    )
    over_stream, by_stream, _ = _run(
        _settings(run_config, mode, "stream"), tmp_path / "s"
    )

    # Assert: bit-identical parameters, the same losses and accuracies
    assert by_messages.keys() == by_stream.keys()
    for key, value in by_messages.items():
        np.testing.assert_array_equal(by_stream[key], value, err_msg=key)
    for a, b in zip(over_messages.rounds, over_stream.rounds, strict=True):
        assert (a.train_loss, a.central_loss, a.central_accuracy) == (
            b.train_loss,
            b.central_loss,
            b.central_accuracy,
        )
        assert a.train_replies == b.train_replies and a.failures == b.failures == 0
    last = over_stream.rounds[-1].extra
    assert (
        last["split-inference-accuracy"]
        == over_messages.rounds[-1].extra["split-inference-accuracy"]
    )


def _unreachable(message: Message, context: Context) -> Message:
    """Node 12 cannot reach the endpoint: its ticket names a closed port."""
    record = message.content.config_records[SESSION]
    record[KEY_ENDPOINT] = re.sub(r":\d+$", ":1", str(record[KEY_ENDPOINT]))
    return split_session(message, context)


def test_auto_falls_back_to_messages_for_a_node_that_cannot_reach_the_endpoint(
    run_config: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    logging.getLogger("flwr").addHandler(caplog.handler)
    settings = _settings(run_config, "splitfed-v1", "auto")

    # Execute
    try:
        history, _, _ = _run(settings, tmp_path, node_12=_unreachable)
    finally:
        logging.getLogger("flwr").removeHandler(caplog.handler)

    # Assert: both trained; the fallback was said, naming the node
    assert history.rounds[-1].train_replies == 2
    assert history.rounds[-1].failures == 0
    assert "node 12 cannot reach the stream endpoint" in caplog.text
    assert "its steps go over Flower messages" in caplog.text


def test_stream_drops_a_node_that_cannot_reach_the_endpoint(
    run_config: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    logging.getLogger("flwr").addHandler(caplog.handler)
    settings = _settings(run_config, "splitfed-v2", "stream")

    # Execute
    try:
        history, _, _ = _run(settings, tmp_path, node_12=_unreachable)
    finally:
        logging.getLogger("flwr").removeHandler(caplog.handler)

    # Assert
    assert history.rounds[-1].train_replies == 1
    assert history.rounds[-1].failures == 1
    assert "dropping node 12 before its first step" in caplog.text


def _vanishes_after_the_first_step(message: Message, context: Context) -> Message:
    """Node 12 connects, receives its first step and disappears (no finish)."""
    record = message.content.config_records[SESSION]
    client = SessionClient(
        Ticket.from_config(record), run_id=RUN_ID, node_id=context.node_id
    )
    client.connect()
    client.receive(timeout=20.0)
    client.close()  # the device lost its network
    raise ConnectionError("device lost its network mid-round")


def test_a_client_lost_mid_round_is_dropped_and_the_round_completes(
    run_config: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    logging.getLogger("flwr").addHandler(caplog.handler)
    settings = _settings(run_config, "splitfed-v1", "stream")

    # Execute
    try:
        history, _, _ = _run(settings, tmp_path, node_12=_vanishes_after_the_first_step)
    finally:
        logging.getLogger("flwr").removeHandler(caplog.handler)

    # Assert: node 12 dropped at its first exchange; node 11's round counted
    assert history.rounds[-1].train_replies == 1
    assert history.rounds[-1].failures == 1
    assert "dropping node 12 at exchange 0: stream closed" in caplog.text


# ------------------------------------------------------------- refused sessions
@pytest.fixture
def endpoint(run_config: dict[str, Any]) -> Any:
    settings = _settings(run_config, "splitfed-v1", "stream")
    with StreamEndpoint(settings.section) as started:
        yield settings, started


def _session_message(ticket: Ticket, control: dict[str, Any]) -> Message:
    from tests.conftest import metadata

    content = RecordDict(
        {
            k.CONTROL: ConfigRecord(control),
            SESSION: ConfigRecord(
                {**ticket.to_config(), "transport": "stream", "connect-timeout": 5.0}
            ),
        }
    )
    return Message(metadata=metadata(0, k.MSG_SESSION), content=content)


def _control() -> dict[str, Any]:
    return {
        k.MODE: "splitfed-v1",
        k.SERVER_ROUND: 1,
        k.RUN_ID: RUN_ID,
        k.TRAIN_ID: 5,
        k.CODEC: "fp32",
        k.INFER: False,
        k.ENCRYPTED: True,
    }


def _snapshot(context: Context) -> dict[str, Any]:
    return {
        name: {key: repr(value) for key, value in record.items()}
        for name, record in context.state.items()
    }


def test_forged_expired_and_reused_tickets_are_refused_and_change_nothing(
    endpoint: Any,
) -> None:
    # Prepare: a real ticket for node 11, and forgeries of it
    settings, started = endpoint
    context = _contexts(settings)[11]
    ticket, session = started.server.announce(run_id=RUN_ID, node_id=11, ttl=30.0)
    forged = Ticket(**{**vars(ticket), "token": bytes(32)})
    expired = Ticket(**{**vars(ticket), "expires_at": ticket.expires_at - 3600})
    before = _snapshot(context)

    # Execute / Assert: a wrong token and an expired ticket are refused, change
    # nothing, and do not use the ticket up
    with pytest.raises(SessionRefused):
        split_session(_session_message(forged, _control()), context)
    with pytest.raises((SessionRefused, TicketError)):
        split_session(_session_message(expired, _control()), context)
    assert _snapshot(context) == before

    # The rightful holder still connects; a second connection with the used
    # ticket is refused while the first one runs
    rightful = SessionClient(ticket, run_id=RUN_ID, node_id=11)
    rightful.connect()
    session.wait_connected(5.0)
    with pytest.raises(SessionRefused):
        split_session(_session_message(ticket, _control()), context)
    assert _snapshot(context) == before
    rightful.close()


def test_a_node_trusting_another_ca_cannot_connect_and_changes_nothing(
    endpoint: Any, tmp_path: Path
) -> None:
    # Prepare: node 11 pins a CA that did not sign the endpoint's certificate
    settings, started = endpoint
    other = generate_tls(tmp_path / "other-ca")
    context = _contexts(settings, {"split.stream-ca": str(other.ca_cert)})[11]
    ticket, session = started.server.announce(run_id=RUN_ID, node_id=11, ttl=30.0)
    before = _snapshot(context)

    # Execute / Assert
    with pytest.raises(EndpointUnreachable):
        split_session(_session_message(ticket, _control()), context)
    assert _snapshot(context) == before
    # the ticket is still good for a node that trusts the right CA
    with SessionClient(ticket, run_id=RUN_ID, node_id=11) as client:
        client.connect()
        session.wait_connected(5.0)


class _SimulatedGrid(FakeGrid, InMemoryGrid):
    """A fake grid the workflow takes for the simulation engine's."""

    def __init__(self, answer: Any, node_ids: list[int]) -> None:
        FakeGrid.__init__(self, answer, node_ids)


def test_a_simulated_node_that_never_connects_is_dropped_with_the_cause_named(
    run_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: node 12's ClientApp never runs (no free worker in the engine)
    logging.getLogger("flwr").addHandler(caplog.handler)
    settings = _settings(
        run_config, "splitfed-v1", "stream", **{"split.stream-connect-timeout": 0.5}
    )
    grid = _SimulatedGrid(lambda message: None, NODES)

    # Execute
    try:
        with StreamEndpoint(settings.section) as started:
            sessions = open_sessions(
                grid,  # type: ignore[arg-type]
                started,
                [12],
                run_id=RUN_ID,
                message_type="train.split_session",
                content=lambda node: RecordDict(),
                group_id="1",
                label="test",
            )
    finally:
        logging.getLogger("flwr").removeHandler(caplog.handler)
        grid.join()

    # Assert
    assert list(sessions.failed) == [12] and not sessions.connected
    assert "did not connect within 0.5 s" in sessions.failed[12]
    assert "client-resources-num-cpus=1" in caplog.text
    assert 'transport="messages"' in caplog.text
