"""STIP's server workflow on a fake grid: reply validation, batching, drops, results."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

from edgecloud.capabilities.stip import keys as k
from edgecloud.capabilities.stip.server import SecureInference, StipCodec
from edgecloud.results import RunRecorder
from edgecloud.workflow.exchange import DroppedError
from tests.conftest import metadata
from tests.fakes import FakeGrid, error_reply, reply

HIDDEN = 4


class _FakeServer:
    hidden_size = HIDDEN
    is_generator = True

    def __init__(self) -> None:
        self.calls: list[dict[str, tuple[int, ...]]] = []
        self.ended: list[str] = []

    def step(self, requests: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.calls.append({key: tuple(v.shape) for key, v in requests.items()})
        return {key: torch.zeros(7) for key in requests}

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(embeds), 3)

    def end(self, session_id: str) -> None:
        self.ended.append(session_id)


def _content(embeds: Any = None, done: bool = False) -> RecordDict:
    content = RecordDict({k.CONTROL: ConfigRecord({k.DONE: done})})
    if embeds is not None:
        content[k.EMBEDS] = ArrayRecord({k.EMBEDS_ARRAY: Array(np.asarray(embeds))})
    return content


def _fabricated(content: RecordDict) -> Message:
    return Message(metadata=metadata(1, k.MSG_STEP), content=content)


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
def test_bad_embeddings_drop_the_node_with_a_reason(
    embeds: np.ndarray, message: str
) -> None:
    with pytest.raises(DroppedError, match=message):
        StipCodec(_FakeServer()).decode(1, _fabricated(_content(embeds)), 1)


def test_missing_records_and_done_replies() -> None:
    codec = StipCodec(_FakeServer())
    with pytest.raises(DroppedError, match="no 'stip-embeds'"):
        codec.decode(1, _fabricated(_content()), 1)
    with pytest.raises(DroppedError, match="no 'stip'"):
        codec.decode(1, _fabricated(RecordDict()), 1)
    assert codec.decode(1, _fabricated(_content(done=True)), 1) is None


def _generating_client(message: Message) -> Message:
    """A client generating 2 tokens; node 3 answers with the wrong width."""
    node = message.metadata.dst_node_id
    rnd = int(message.content.config_records[k.CONTROL][k.ROUND])  # type: ignore[arg-type]
    if node == 3:
        return reply(message, _content(np.zeros((1, 9), np.float32)))
    if rnd == 1:
        assert k.LOGITS not in message.content
        return reply(message, _content(np.ones((5, HIDDEN), np.float32)))
    assert message.content.array_records[k.LOGITS][k.LOGITS_ARRAY].shape == (7,)
    if rnd < 3:
        return reply(message, _content(np.ones((1, HIDDEN), np.float32)))
    return reply(message, _content(done=True))


@pytest.mark.usefixtures("server_identity")
def test_exchanges_batch_drop_finish_and_write_one_results_schema(
    tmp_path: Path,
) -> None:
    # Prepare
    server, grid = _FakeServer(), FakeGrid(_generating_client, [1, 2, 3])
    recorder = RunRecorder(tmp_path, {"capability": "stip"}, label="stip test")

    # Execute: 2 new tokens = 3 exchanges
    history = SecureInference(server, 3, 10.0).run(grid, [1, 2, 3], recorder)  # type: ignore[arg-type]

    # Assert: node 3 dropped in exchange 1, the others prefilled 5 then stepped 1
    assert [[m.metadata.dst_node_id for m in b] for b in grid.sent] == [
        [1, 2, 3],
        [1, 2],
        [1, 2],
    ]
    assert server.calls == [{"1": (5, 4), "2": (5, 4)}, {"1": (1, 4), "2": (1, 4)}]
    assert sorted(server.ended) == ["1", "2", "3"]
    assert history.status == "completed"
    assert history.summary["generated-tokens"] == 4
    assert history.summary["dropped-nodes"] == [3]
    assert [r.failures for r in history.rounds] == [1, 0, 0]
    assert [r.extra["new-positions"] for r in history.rounds] == [10, 2, 0]
    assert [r.extra["finished"] for r in history.rounds] == [0, 0, 2]
    assert all(r.bytes_down > 0 and r.bytes_up > 0 for r in history.rounds)
    # the same results.json / metrics.csv / accuracy.png as every capability
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["generated-tokens"] == 4 and len(saved["rounds"]) == 3
    assert (tmp_path / "metrics.csv").is_file() and (
        tmp_path / "accuracy.png"
    ).is_file()


class _FakeClassifier(_FakeServer):
    is_generator = False


def _classifying_client(message: Message) -> Message:
    if k.LOGITS not in message.content:
        return reply(message, _content(np.ones((6, HIDDEN), np.float32)))
    logits = message.content.array_records[k.LOGITS][k.LOGITS_ARRAY].numpy()
    assert logits.shape == (1, 3)
    return reply(message, _content(done=True))


@pytest.mark.usefixtures("server_identity")
def test_classifiers_finish_after_one_forward(tmp_path: Path) -> None:
    grid = FakeGrid(_classifying_client)
    history = SecureInference(_FakeClassifier(), 2, 10.0).run(
        grid,  # type: ignore[arg-type]
        [1, 2],
        RunRecorder(tmp_path, {}),
    )
    assert len(grid.sent) == 2
    assert history.summary["generated-tokens"] == 0
    assert history.summary["dropped-nodes"] == []


@pytest.mark.usefixtures("server_identity")
def test_a_client_error_ends_only_its_session(tmp_path: Path) -> None:
    # Prepare: node 2 crashes when the first logits arrive
    def answer(message: Message) -> Message:
        if message.metadata.dst_node_id == 2 and k.LOGITS in message.content:
            return error_reply(message, "Traceback\nRuntimeError: device lost")
        return _generating_client(message)

    server = _FakeServer()

    # Execute
    history = SecureInference(server, 3, 10.0).run(
        FakeGrid(answer),  # type: ignore[arg-type]
        [1, 2],
        RunRecorder(tmp_path, {}),
    )

    # Assert
    assert history.summary["dropped-nodes"] == [2]
    assert history.summary["generated-tokens"] == 2
    assert server.ended.count("2") == 1


@pytest.mark.usefixtures("server_identity")
def test_token_budget_ends_sessions_still_generating(tmp_path: Path) -> None:
    # Prepare: a client that never says done
    def never_done(message: Message) -> Message:
        return reply(message, _content(np.ones((1, HIDDEN), np.float32)))

    server, grid = _FakeServer(), FakeGrid(never_done, [1])

    # Execute: at most 4 exchanges (3 new tokens)
    history = SecureInference(server, 4, 10.0).run(
        grid,  # type: ignore[arg-type]
        [1],
        RunRecorder(tmp_path, {}),
    )

    # Assert: cut off after the budget, its session ended
    assert len(grid.sent) == 4 and server.ended == ["1"]
    assert history.summary["generated-tokens"] == 3
