"""SecureInference: reply validation and the round loop on fabricated replies."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message
from flwr.supercore.task_identity import TaskIdentity

from edgecloud.protocol import STIP, STIP_EMBEDS
from edgecloud.strategies.secure_inference import SecureInference

HIDDEN = 4


class _FakeServer:
    hidden_size = HIDDEN
    is_generator = True

    def __init__(self) -> None:
        self.calls: list[dict[str, tuple[int, ...]]] = []
        self.ended: list[str] = []

    def step(self, requests: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.calls.append({k: tuple(v.shape) for k, v in requests.items()})
        return {k: torch.zeros(7) for k in requests}

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(embeds), 3)

    def end(self, session_id: str) -> None:
        self.ended.append(session_id)


def _reply(
    make_reply: Callable[..., Message],
    node: int,
    embeds: Any = None,
    done: bool = False,
) -> Message:
    reply = make_reply(src_node_id=node, configs={STIP: ConfigRecord({"done": done})})
    if embeds is not None:
        reply.content[STIP_EMBEDS] = ArrayRecord({"embeds": Array(np.asarray(embeds))})
    return reply


@pytest.mark.parametrize(
    ("embeds", "message"),
    [
        (np.zeros((2, 5), np.float32), "expected"),  # wrong hidden size
        (np.zeros((2, 4), np.float64), "float32"),  # wrong dtype
        (np.full((1, 4), np.nan, np.float32), "NaN"),  # poisoned values
        (np.zeros((1, 2, 4), np.float32), r"expected \(tokens, 4\)"),  # batch to an LM
        (np.zeros((0, 4), np.float32), "expected"),  # empty
    ],
)
def test_bad_embeddings_are_rejected_with_a_reason(
    make_reply: Callable[..., Message], tmp_path: Path, embeds: np.ndarray, message: str
) -> None:
    strategy = SecureInference(_FakeServer(), 3, 10.0, tmp_path)
    with pytest.raises(ValueError, match=message):
        strategy._read(1, _reply(make_reply, 1, embeds))


def test_error_missing_and_done_replies(
    make_reply: Callable[..., Message], tmp_path: Path
) -> None:
    strategy = SecureInference(_FakeServer(), 3, 10.0, tmp_path)
    with pytest.raises(ValueError, match="no reply"):
        strategy._read(1, None)
    with pytest.raises(ValueError, match="client error: boom"):
        strategy._read(1, make_reply(src_node_id=1, error="boom"))
    with pytest.raises(ValueError, match="no 'stip-embeds'"):
        strategy._read(1, _reply(make_reply, 1))
    assert strategy._read(1, _reply(make_reply, 1, done=True)) is None


Answer = Callable[[int, int, Message], Message]


class _FakeGrid:
    """Answers every message with ``answer(node, round, message)``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.rounds: list[list[int]] = []

    def send_and_receive(
        self, messages: Iterable[Message], timeout: float
    ) -> list[Message]:
        messages = list(messages)
        self.rounds.append([m.metadata.dst_node_id for m in messages])
        return [
            self.answer(
                m.metadata.dst_node_id, int(m.content.config_records[STIP]["round"]), m
            )
            for m in messages
        ]


def _generating_client(make_reply: Callable[..., Message]) -> Answer:
    """A client generating 2 tokens; node 3 answers with the wrong width."""

    def answer(node: int, rnd: int, _message: Message) -> Message:
        if node == 3:
            return _reply(make_reply, node, np.zeros((1, 9), np.float32))
        if rnd == 1:
            return _reply(make_reply, node, np.ones((5, HIDDEN), np.float32))
        if rnd < 3:
            return _reply(make_reply, node, np.ones((1, HIDDEN), np.float32))
        return _reply(make_reply, node, done=True)

    return answer


@pytest.fixture
def run_identity() -> Iterator[None]:
    """Flower stamps new Messages with the run id of the running ServerApp."""
    names = ("_run_id", "_node_id", "_task_id")
    previous = [getattr(TaskIdentity, n) for n in names]
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    for name, value in zip(names, previous, strict=True):
        setattr(TaskIdentity, name, value)


@pytest.mark.usefixtures("run_identity")
def test_round_loop_batches_drops_and_finishes(
    make_reply: Callable[..., Message], tmp_path: Path
) -> None:
    # Prepare
    server, grid = _FakeServer(), _FakeGrid(_generating_client(make_reply))

    # Execute: 2 new tokens = 3 rounds
    result = SecureInference(server, 3, 10.0, tmp_path).run(grid, [1, 2, 3])  # type: ignore[arg-type]

    # Assert: node 3 dropped in round 1, others prefilled 5 then stepped 1
    assert grid.rounds == [[1, 2, 3], [1, 2], [1, 2]]
    assert server.calls == [{"1": (5, 4), "2": (5, 4)}, {"1": (1, 4), "2": (1, 4)}]
    assert result.dropped_nodes == [3]
    assert result.generated_tokens == 4
    assert sorted(server.ended) == ["1", "2", "3"]
    assert (tmp_path / "stip_results.json").is_file()


class _FakeClassifier(_FakeServer):
    is_generator = False


def _classifying_client(make_reply: Callable[..., Message]) -> Answer:
    def answer(node: int, rnd: int, message: Message) -> Message:
        if rnd == 1:
            return _reply(make_reply, node, np.ones((6, HIDDEN), np.float32))
        logits = message.content.array_records["stip-logits"]["logits"].numpy()
        assert logits.shape == (1, 3)
        return _reply(make_reply, node, done=True)

    return answer


@pytest.mark.usefixtures("run_identity")
def test_classifiers_finish_after_one_forward(
    make_reply: Callable[..., Message], tmp_path: Path
) -> None:
    grid = _FakeGrid(_classifying_client(make_reply))
    result = SecureInference(_FakeClassifier(), 2, 10.0, tmp_path).run(grid, [1, 2])  # type: ignore[arg-type]
    assert grid.rounds == [[1, 2], [1, 2]]
    assert result.generated_tokens == 0 and result.dropped_nodes == []
