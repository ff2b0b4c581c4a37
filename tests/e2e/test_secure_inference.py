"""STIP through Flower: developer tool -> ServerApp serves -> two ClientApps generate.

The generated text must equal plaintext ``generate``; nothing the server receives
may equal a plaintext activation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import PreTrainedTokenizerFast

from edgecloud.client_stip import stip_step
from edgecloud.deploy.flwr_cli import (
    FINISHED_COMPLETED,
    flwr,
    submit_run,
    wait_for_run,
)
from edgecloud.local_simulation import PROJECT_DIR, run_local_simulation
from edgecloud.protocol import STIP_EMBEDS
from edgecloud.stip.developer import make_instances
from tests.stip_models import VOCAB, tiny_model

pytestmark = pytest.mark.slow
PROMPTS = ("w3 w14 w15 w92 w6", "w5 w35 w8")


def _save_with_tokenizer(family: str, path: Path) -> None:
    model = tiny_model(family)
    model.save_pretrained(path)
    vocab = {f"w{i}": i for i in range(VOCAB)}
    core = Tokenizer(WordLevel(vocab, unk_token="w0"))
    core.pre_tokenizer = WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="w0").save_pretrained(path)


def _plaintext_text(family: str, prompt: str, n: int) -> str:
    ids = torch.tensor([[int(w[1:]) for w in prompt.split()]])
    with torch.no_grad():
        out = tiny_model(family).generate(
            ids, max_new_tokens=n, min_new_tokens=n, do_sample=False
        )
    return " ".join(f"w{t}" for t in out[0, ids.shape[1] :].tolist())


class _Recorder:
    """A ClientApp that saves every embedding it sends (clients run in Ray actors,
    so the record goes through files)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.app = ClientApp()
        self.app.query("stip_step")(self._step)

    def _step(self, msg: Message, context: Context) -> Message:
        reply = stip_step(msg, context)
        if STIP_EMBEDS in reply.content.array_records:
            sent = reply.content.array_records[STIP_EMBEDS]["embeds"].numpy()
            name = f"{context.node_id}-{msg.metadata.group_id}.npy"
            np.save(self.directory / name, sent, allow_pickle=False)
        return reply

    @property
    def sent(self) -> list[np.ndarray]:
        return [
            np.load(f, allow_pickle=False) for f in sorted(self.directory.glob("*.npy"))
        ]


# GPT-2 goes through `flwr run .` below; LLaMA-GQA through the simulation engine.
@pytest.mark.parametrize("family", ["llama"])
def test_simulation_generation_equals_plaintext_and_server_sees_no_plaintext(
    tmp_path: Path, family: str
) -> None:
    # Prepare: developer tool on a saved random tiny model with a tokenizer
    _save_with_tokenizer(family, tmp_path / "model")
    (instance,) = make_instances(tmp_path / "model", tmp_path / "bundles", seed=4)
    recorder = _Recorder(tmp_path / "sent")
    out = tmp_path / "clients"

    # Execute: strategy=secure-inference on the simulation engine, 2 SuperNodes
    run_local_simulation(
        {
            "strategy": "secure-inference",
            "stip-server-bundle": str(instance.server),
            "stip-user-bundle": str(instance.user),
            "stip-prompt": PROMPTS[0],
            "stip-max-new-tokens": 32,
            "stip-output-dir": str(out),
            "output-dir": str(tmp_path / "server"),
        },
        num_supernodes=2,
        client_app=recorder.app,
    )

    # Assert: both clients generated exactly the plaintext continuation
    expected = _plaintext_text(family, PROMPTS[0], 32)
    for partition in (0, 1):
        record = json.loads((out / f"stip-partition-{partition}.json").read_text())
        assert record["text"] == expected
    summary = json.loads((tmp_path / "server" / "stip_results.json").read_text())
    assert summary["summary"]["generated_tokens"] == 64
    assert summary["summary"]["rounds"] == 33
    # Nothing the server received equals any plaintext embedding
    table = tiny_model(family).get_input_embeddings().weight.detach().numpy()
    sent_arrays = recorder.sent
    assert len(sent_arrays) == 2 * 32  # prompt + 31 tokens per client
    for sent in sent_arrays:
        for row in sent:
            assert not np.any(np.all(np.isclose(table, row, atol=0), axis=1))


def test_flwr_run_serves_two_supernodes_and_text_equals_plaintext(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    # Prepare
    _save_with_tokenizer("gpt2", tmp_path / "model")
    (instance,) = make_instances(tmp_path / "model", tmp_path / "bundles", seed=8)
    flwr(
        ["federation", "simulation-config", "--num-supernodes", "2"],
        local_env,
        cwd=PROJECT_DIR,
    )
    out = tmp_path / "clients"

    # Execute: the plain Flower CLI
    run_id = submit_run(
        PROJECT_DIR,
        "local",
        local_env,
        f'strategy="secure-inference" stip-server-bundle="{instance.server}" '
        f'stip-user-bundle="{instance.user}" stip-prompt="{PROMPTS[1]}" '
        f'stip-max-new-tokens=16 stip-output-dir="{out}" '
        f'output-dir="{tmp_path / "server"}"',
    )
    status = wait_for_run(run_id, "local", local_env, timeout=600, stream_logs=False)

    # Assert
    assert status["status"] == FINISHED_COMPLETED, status
    expected = _plaintext_text("gpt2", PROMPTS[1], 16)
    texts = [json.loads(p.read_text())["text"] for p in sorted(out.glob("*.json"))]
    assert texts == [expected, expected]


def test_bad_client_reply_is_dropped_without_touching_other_sessions(
    tmp_path: Path,
) -> None:
    # Prepare: node 1 answers with the wrong embedding width
    _save_with_tokenizer("llama", tmp_path / "model")
    (instance,) = make_instances(tmp_path / "model", tmp_path / "bundles", seed=4)
    app = ClientApp()

    @app.query("stip_step")
    def _step(msg: Message, context: Context) -> Message:
        reply: Any = stip_step(msg, context)
        if (
            context.node_config["partition-id"] == 1
            and STIP_EMBEDS in reply.content.array_records
        ):
            from flwr.app import Array, ArrayRecord

            reply.content[STIP_EMBEDS] = ArrayRecord(
                {"embeds": Array(np.zeros((1, 5), np.float32))}
            )
        return reply

    # Execute
    run_local_simulation(
        {
            "strategy": "secure-inference",
            "stip-server-bundle": str(instance.server),
            "stip-user-bundle": str(instance.user),
            "stip-prompt": PROMPTS[0],
            "stip-max-new-tokens": 4,
            "stip-output-dir": str(tmp_path / "clients"),
            "output-dir": str(tmp_path / "server"),
        },
        num_supernodes=2,
        client_app=app,
    )

    # Assert: node 1 dropped in round 1, node 0 still generated the right text
    summary = json.loads((tmp_path / "server" / "stip_results.json").read_text())
    assert len(summary["dropped_nodes"]) == 1
    record = json.loads((tmp_path / "clients" / "stip-partition-0.json").read_text())
    assert record["text"] == _plaintext_text("llama", PROMPTS[0], 4)
