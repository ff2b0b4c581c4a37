"""The data owner's handler called with real Messages and a real Context."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from edgecloud.capabilities.stip import keys as k
from edgecloud.capabilities.stip.client import prompt_ids, stip_step
from edgecloud.exceptions import ConfigError
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


def _context(
    run_config: dict[str, Any],
    instance: Any,
    out: Path,
    node_config: dict[str, Any] | None = None,
) -> Context:
    config = {
        **run_config,
        "stip.user-bundle": str(instance.user),
        "stip.prompt": "5,6,7",
        "stip.max-new-tokens": 2,
        "stip.output-dir": str(out),
    }
    return Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": 0, "num-partitions": 1, **(node_config or {})},
        state=RecordDict(),
        run_config=config,
    )


def _message(rnd: int, logits: torch.Tensor | None = None) -> Message:
    phase = k.PHASE_START if rnd == 1 else k.PHASE_CONTINUE
    content = RecordDict({k.CONTROL: ConfigRecord({k.ROUND: rnd, k.PHASE: phase})})
    if logits is not None:
        content[k.LOGITS] = ArrayRecord({k.LOGITS_ARRAY: Array(logits.numpy())})
    return Message(metadata=metadata(0, k.MSG_STEP), content=content)


def test_start_continue_done_and_rejected_logits_keep_state(
    run_config: dict[str, Any], instance: Any, tmp_path: Path
) -> None:
    # Prepare
    context = _context(run_config, instance, tmp_path)
    server = StipServer(instance.server)

    # Execute: start -> permuted prompt embeddings
    reply = stip_step(_message(1), context)
    sent = reply.content.array_records[k.EMBEDS][k.EMBEDS_ARRAY].numpy()
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
                reply.content.array_records[k.EMBEDS][k.EMBEDS_ARRAY].numpy()
            )
        }
    )["7"]
    reply = stip_step(_message(3, logits), context)

    # Assert
    assert reply.content.config_records[k.CONTROL][k.DONE] is True
    record = json.loads((tmp_path / "stip-partition-0.json").read_text())
    assert record["prompt"] == [5, 6, 7] and len(record["generated"]) == 2


def test_prompt_parsing_errors_are_clear() -> None:
    assert prompt_ids("3, 1,4", None) == [3, 1, 4]
    with pytest.raises(ValueError, match="no tokenizer"):
        prompt_ids("hello world", None)
    with pytest.raises(ValueError, match="empty"):
        prompt_ids("", None)


def test_a_node_overrides_its_prompt_and_bundle_path_is_checked(
    run_config: dict[str, Any], instance: Any, tmp_path: Path
) -> None:
    # Prepare: this node asks its own prompt (node config, dotted like the run key)
    own = _context(run_config, instance, tmp_path, {"stip.prompt": "9,8"})

    # Execute
    reply = stip_step(_message(1), own)

    # Assert
    assert reply.content.array_records[k.EMBEDS][k.EMBEDS_ARRAY].shape == (2, 32)

    # A node's bundle path that does not exist fails naming the node config key
    lost = _context(
        run_config, instance, tmp_path, {"stip.user-bundle": "no/such/user"}
    )
    with pytest.raises(
        ConfigError, match=re.escape("node config key 'stip.user-bundle'")
    ):
        stip_step(_message(1), lost)
    # ... and a run-wide key cannot be set per node
    greedy = _context(run_config, instance, tmp_path, {"stip.sampling": "sample"})
    with pytest.raises(
        ConfigError, match=re.escape("'stip.sampling' is a run-wide setting")
    ):
        stip_step(_message(1), greedy)
