"""STIP over a streamed session: the real endpoint, model server and data owners."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Context, Message, RecordDict

from edgecloud.capabilities.stip import keys as k
from edgecloud.capabilities.stip.client import stip_session, stip_step
from edgecloud.capabilities.stip.config import StipConfig
from edgecloud.capabilities.stip.server import SecureInference
from edgecloud.capability import load_run_settings
from edgecloud.results import RunHistory, RunRecorder
from edgecloud.stip.developer import make_instances
from edgecloud.stip.runtime import StipServer
from edgecloud.workflow.stream import StreamEndpoint
from tests.fakes import FakeGrid
from tests.stip_models import tiny_model

pytestmark = pytest.mark.usefixtures("server_identity")
NODES = [21, 22]
TOKENS = 12


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("stip-session")
    tiny_model("llama").save_pretrained(root / "model")
    (made,) = make_instances(root / "model", root / "bundles", seed=5)
    return made


def _generate(
    run_config: dict[str, Any], instance: Any, transport: str, out: Path
) -> tuple[RunHistory, list[list[int]], int]:
    config = {
        **run_config,
        "capability": "stip",
        "stip.server-bundle": str(instance.server),
        "stip.user-bundle": str(instance.user),
        "stip.prompt": "4,8,15",
        "stip.max-new-tokens": TOKENS,
        "stip.output-dir": str(out / "owners"),
        "stip.transport": transport,
    }
    settings = load_run_settings(config)
    assert isinstance(settings.section, StipConfig)
    contexts = {
        node: Context(
            run_id=3,
            node_id=node,
            node_config={"partition-id": i, "num-partitions": 2},
            state=RecordDict(),
            run_config=dict(config),
        )
        for i, node in enumerate(NODES)
    }

    def answer(message: Message) -> Message:
        session = message.metadata.message_type == k.MSG_SESSION
        handler = stip_session if session else stip_step
        return handler(message, contexts[message.metadata.dst_node_id])

    grid = FakeGrid(answer, NODES)
    server = StipServer(instance.server)
    endpoint = StreamEndpoint(settings.section) if transport == "stream" else None
    try:
        if endpoint is not None:
            endpoint.__enter__()
        history = SecureInference(server, TOKENS + 1, 30.0, endpoint, 3).run(
            grid,  # type: ignore[arg-type]
            NODES,
            RunRecorder(out / "server", {}),
        )
    finally:
        if endpoint is not None:
            endpoint.__exit__(None, None, None)
        grid.join()
    tokens = [
        json.loads((out / "owners" / f"stip-partition-{p}.json").read_text())[
            "generated"
        ]
        for p in (0, 1)
    ]
    return history, tokens, len(grid.sent)


def test_stream_generates_the_same_tokens_with_one_message_per_owner(
    run_config: dict[str, Any], instance: Any, tmp_path: Path
) -> None:
    # Execute
    by_messages, messages_tokens, messages_exchanges = _generate(
        run_config, instance, "messages", tmp_path / "m"
    )
    by_stream, stream_tokens, stream_exchanges = _generate(
        run_config, instance, "stream", tmp_path / "s"
    )

    # Assert: identical tokens; over the stream no message per token
    assert stream_tokens == messages_tokens
    assert all(len(t) == TOKENS for t in stream_tokens)
    assert by_stream.summary["generated-tokens"] == 2 * TOKENS
    assert by_stream.summary["dropped-nodes"] == []
    assert messages_exchanges == TOKENS + 1 and stream_exchanges == 0
    assert len(by_stream.rounds) == len(by_messages.rounds) == TOKENS + 1
    assert by_stream.summary["bytes-up"] > 0 and by_stream.summary["bytes-down"] > 0
