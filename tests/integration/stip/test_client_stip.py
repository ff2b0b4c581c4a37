"""The data owner's handler called with real Messages and a real Context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from edgecloud.client_stip import prompt_ids, stip_step
from edgecloud.protocol import STIP, STIP_EMBEDS, STIP_LOGITS
from edgecloud.stip.developer import make_instances
from edgecloud.stip.runtime import StipServer
from tests.conftest import metadata
from tests.stip_models import tiny_model


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("stip-client")
    tiny_model("llama").save_pretrained(root / "model")
    (made,) = make_instances(root / "model", root / "bundles", seed=2)
    return made


def _context(run_config: dict[str, Any], instance: Any, out: Path) -> Context:
    config = {
        **run_config,
        "stip-user-bundle": str(instance.user),
        "stip-prompt": "5,6,7",
        "stip-max-new-tokens": 2,
        "stip-output-dir": str(out),
    }
    return Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": 0, "num-partitions": 1},
        state=RecordDict(),
        run_config=config,
    )


def _message(rnd: int, logits: torch.Tensor | None = None) -> Message:
    content = RecordDict(
        {
            STIP: ConfigRecord(
                {"round": rnd, "phase": "start" if rnd == 1 else "continue"}
            )
        }
    )
    if logits is not None:
        content[STIP_LOGITS] = ArrayRecord({"logits": Array(logits.numpy())})
    return Message(metadata=metadata(0, "query.stip_step"), content=content)


def test_start_continue_done_and_rejected_logits_keep_state(
    run_config: dict[str, Any], instance: Any, tmp_path: Path
) -> None:
    # Prepare
    context = _context(run_config, instance, tmp_path)
    server = StipServer(instance.server)

    # Execute: start -> permuted prompt embeddings
    reply = stip_step(_message(1), context)
    sent = reply.content.array_records[STIP_EMBEDS]["embeds"].numpy()
    assert sent.shape == (3, 32) and sent.dtype == np.float32
    logits = server.step({"7": torch.from_numpy(sent)})["7"]

    # A malformed logits message fails and leaves the client's state as it was
    before = json.loads(str(context.state.config_records["stip-client"]["json"]))
    with pytest.raises(Exception):  # noqa: B017 -- any failure, state must hold
        stip_step(_message(2, torch.zeros(3)), context)
    assert (
        json.loads(str(context.state.config_records["stip-client"]["json"])) == before
    )

    # Continue: one token, then done after max-new-tokens=2
    reply = stip_step(_message(2, logits), context)
    logits = server.step(
        {
            "7": torch.from_numpy(
                reply.content.array_records[STIP_EMBEDS]["embeds"].numpy()
            )
        }
    )["7"]
    reply = stip_step(_message(3, logits), context)

    # Assert
    assert reply.content.config_records[STIP]["done"] is True
    record = json.loads((tmp_path / "stip-partition-0.json").read_text())
    assert record["prompt"] == [5, 6, 7] and len(record["generated"]) == 2


def test_prompt_parsing_errors_are_clear() -> None:
    assert prompt_ids("3, 1,4", None) == [3, 1, 4]
    with pytest.raises(ValueError, match="no tokenizer"):
        prompt_ids("hello world", None)
    with pytest.raises(ValueError, match="empty"):
        prompt_ids("", None)
