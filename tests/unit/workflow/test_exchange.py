"""The lock-step exchange driver on a fake grid: order, drops, bugs, traffic."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flwr.app import ConfigRecord, Message, RecordDict

from edgecloud.workflow.exchange import (
    Conversation,
    DroppedError,
    ExchangeReport,
    LockstepExchange,
    MessageTransport,
)
from edgecloud.workflow.records import reply_config, value_of
from tests.fakes import FakeGrid, error_reply, reply

pytestmark = pytest.mark.usefixtures("server_identity")


class _CountCodec:
    """Sends ``{"n": value}``; a reply carries ``{"n": value + 1}`` (read as int)."""

    message_type = "query.count"

    def __init__(self) -> None:
        self.encoded: list[tuple[int, int, int]] = []  # (node, value, exchange)

    def encode(self, node: int, outgoing: int, exchange: int) -> RecordDict:
        self.encoded.append((node, outgoing, exchange))
        return RecordDict({"c": ConfigRecord({"n": outgoing})})

    def decode(self, node: int, message: Message, exchange: int) -> int:
        return value_of(reply_config(message, "c"), "n", int)


def _echo_plus_one(message: Message) -> Message:
    n = message.content.config_records["c"]["n"]
    return reply(message, RecordDict({"c": ConfigRecord({"n": int(n) + 1})}))  # type: ignore[arg-type]


def _count_to(limit: int) -> Conversation[int, int, list[int]]:
    """Send 0, then every reply back, until a reply reaches ``limit``."""
    seen = []
    value = yield 0
    while value < limit:
        seen.append(value)
        value = yield value
    return [*seen, value]


def _driver(
    grid: FakeGrid, codec: _CountCodec, **kwargs: object
) -> LockstepExchange[int, int, list[int]]:
    transport = MessageTransport(
        grid,  # type: ignore[arg-type]
        codec,
        timeout=5.0,
        group_id="1",
    )
    return LockstepExchange(
        transport,
        label="test round 1",
        **kwargs,  # type: ignore[arg-type]
    )


def test_conversations_advance_in_lock_step_until_each_returns() -> None:
    # Prepare: node 1 stops after 2 replies, node 2 after 4
    grid, codec = FakeGrid(_echo_plus_one), _CountCodec()
    reports: list[ExchangeReport] = []

    # Execute
    outcome = _driver(grid, codec, after_exchange=reports.append).run(
        {1: _count_to(2), 2: _count_to(4)}
    )

    # Assert: one send_and_receive per exchange, with every running node in it
    assert [[m.metadata.dst_node_id for m in batch] for batch in grid.sent] == [
        [1, 2],
        [1, 2],
        [2],
        [2],
    ]
    assert outcome.results == {1: [1, 2], 2: [1, 2, 3, 4]}
    assert outcome.dropped == {}
    assert [r.finished for r in reports] == [[], [1], [], [2]]
    assert outcome.traffic.exchanges == 4
    assert outcome.traffic.bytes_down > 0 and outcome.traffic.bytes_up > 0
    assert sum(r.traffic.bytes_up for r in reports) == outcome.traffic.bytes_up
    assert all(m.metadata.group_id == "1" for batch in grid.sent for m in batch)


@pytest.mark.parametrize(
    ("answer_for_node_2", "reason"),
    [
        # the ClientApp raised: the last line of its traceback is the reason
        (lambda m: error_reply(m, "Traceback ...\nValueError: bad weights"), "bad"),
        # no reply before the timeout
        (lambda m: None, "no reply within the timeout"),
        # a reply without the record the protocol needs is malformed
        (lambda m: reply(m, RecordDict({"x": ConfigRecord({"n": 1})})), "no 'c'"),
        # a value of the wrong type is malformed, not a crash
        (lambda m: reply(m, RecordDict({"c": ConfigRecord({"n": "1"})})), "expected"),
    ],
)
def test_a_bad_reply_drops_only_its_node(
    answer_for_node_2: Callable[[Message], Message | None],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Prepare
    def answer(message: Message) -> Message | None:
        if message.metadata.dst_node_id == 2:
            return answer_for_node_2(message)
        return _echo_plus_one(message)

    forgotten: list[int] = []
    logger = logging.getLogger("flwr")
    logger.addHandler(caplog.handler)

    # Execute
    try:
        outcome = _driver(
            FakeGrid(answer), _CountCodec(), on_drop=lambda n, r: forgotten.append(n)
        ).run({1: _count_to(3), 2: _count_to(3)})
    finally:
        logger.removeHandler(caplog.handler)

    # Assert
    assert outcome.results == {1: [1, 2, 3]}
    assert list(outcome.dropped) == [2] and reason in outcome.dropped[2]
    assert forgotten == [2]
    assert "test round 1: dropping node 2 at exchange 0" in caplog.text


def test_an_error_reply_from_the_superlink_drops_the_node_it_was_sent_to() -> None:
    # Prepare: the reply answers the message to node 2, but its src_node_id is the
    # SuperLink's (a node that died mid-round)
    def answer(message: Message) -> Message:
        if message.metadata.dst_node_id == 2:
            failed = error_reply(message, "node unavailable", code=5)
            failed.metadata.__dict__["_src_node_id"] = 999
            return failed
        return _echo_plus_one(message)

    # Execute
    outcome = _driver(FakeGrid(answer), _CountCodec()).run(
        {1: _count_to(1), 2: _count_to(1)}
    )

    # Assert
    assert list(outcome.dropped) == [2] and "code 5" in outcome.dropped[2]
    assert outcome.results == {1: [1]}


def test_a_bug_in_a_conversation_raises_instead_of_dropping() -> None:
    def buggy() -> Conversation[int, int, None]:
        value = yield 0
        {}["missing"]  # a programming error, not a malformed reply
        yield value

    with pytest.raises(KeyError, match="missing"):
        _driver(FakeGrid(_echo_plus_one), _CountCodec()).run({1: buggy()})


def test_drop_on_names_extra_exceptions_that_mean_a_bad_reply() -> None:
    class FrameRejectedError(Exception):
        pass

    def rejects() -> Conversation[int, int, None]:
        yield 0
        raise FrameRejectedError("authentication failed")

    # Execute
    outcome = _driver(
        FakeGrid(_echo_plus_one), _CountCodec(), drop_on=(FrameRejectedError,)
    ).run({1: rejects(), 2: _count_to(1)})

    # Assert
    assert outcome.dropped == {1: "authentication failed"}
    assert outcome.results == {2: [1]}


def test_prepare_next_runs_after_every_conversation_yielded_and_before_encoding() -> (
    None
):
    # Prepare: a "batch" that the conversations' outgoing values wait for
    codec = _CountCodec()
    events: list[str] = []

    def conversation(node: int) -> Conversation[int, int, None]:
        events.append(f"yield {node}")
        value = yield 0
        events.append(f"yield {node}")
        yield value
        events.append(f"done {node}")

    original_encode = codec.encode

    def encode(node: int, outgoing: int, exchange: int) -> RecordDict:
        events.append(f"encode {node}")
        return original_encode(node, outgoing, exchange)

    codec.encode = encode  # type: ignore[method-assign]

    # Execute
    _driver(
        FakeGrid(_echo_plus_one),
        codec,
        prepare_next=lambda: events.append("prepare"),
    ).run({1: conversation(1), 2: conversation(2)})

    # Assert: each exchange's outgoing values are prepared together, then encoded
    assert events == [
        "yield 1",
        "yield 2",
        "prepare",
        "encode 1",
        "encode 2",
        "yield 1",
        "yield 2",
        "prepare",
        "encode 1",
        "encode 2",
        "done 1",
        "done 2",
        "prepare",
    ]


def test_drop_error_inside_a_conversation_drops_the_node() -> None:
    def refuses() -> Conversation[int, int, None]:
        steps = yield 0
        if steps < 5:
            raise DroppedError(f"client reports {steps} steps; expected at least 5")

    outcome = _driver(FakeGrid(_echo_plus_one), _CountCodec()).run({1: refuses()})
    assert outcome.dropped == {1: "client reports 1 steps; expected at least 5"}
