"""STIP through Flower: developer tool -> ServerApp serves -> two ClientApps generate.

The generated text must equal plaintext ``generate``; nothing the server receives
may equal a plaintext activation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp import ClientApp

from edgecloud.capabilities.stip import keys as k
from edgecloud.capabilities.stip.client import stip_step
from edgecloud.deploy.flwr_cli import (
    FINISHED_COMPLETED,
    flwr,
    submit_run,
    wait_for_run,
)
from edgecloud.local_simulation import PROJECT_DIR, run_local_simulation
from edgecloud.stip.developer import make_instances
from tests.e2e.helpers import read_outputs
from tests.stip_models import plaintext_text, save_with_tokenizer, tiny_model

pytestmark = pytest.mark.slow
PROMPTS = ("w3 w14 w15 w92 w6", "w5 w35 w8")


class _DataOwners:
    """The real data owner's handler on every node; partition 2 is faulty.

    Partitions 0 and 1 save every embedding they send (clients run in Ray
    actors, so the record goes through files); partition 2 answers with the wrong
    embedding width and must be dropped without touching the other sessions.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.app = ClientApp()
        self.app.query(k.STEP_ACTION)(self._step)

    def _step(self, msg: Message, context: Context) -> Message:
        reply = stip_step(msg, context)
        if k.EMBEDS not in reply.content.array_records:
            return reply
        if context.node_config["partition-id"] == 2:
            reply.content[k.EMBEDS] = ArrayRecord(
                {k.EMBEDS_ARRAY: Array(np.zeros((1, 5), np.float32))}
            )
            return reply
        sent = reply.content.array_records[k.EMBEDS][k.EMBEDS_ARRAY].numpy()
        name = f"{context.node_id}-{msg.content.config_records[k.CONTROL][k.ROUND]}.npy"
        np.save(self.directory / name, sent, allow_pickle=False)
        return reply

    @property
    def sent(self) -> list[np.ndarray]:
        return [
            np.load(f, allow_pickle=False) for f in sorted(self.directory.glob("*.npy"))
        ]


# GPT-2 goes through `flwr run .` below; LLaMA-GQA through the simulation engine.
def test_simulation_generates_plaintext_text_drops_a_bad_owner_and_leaks_nothing(
    tmp_path: Path,
) -> None:
    # Prepare: developer tool on a saved random tiny model with a tokenizer
    family = "llama"
    save_with_tokenizer(family, tmp_path / "model")
    (instance,) = make_instances(tmp_path / "model", tmp_path / "bundles", seed=4)
    owners = _DataOwners(tmp_path / "sent")
    out = tmp_path / "clients"

    # Execute: capability=stip on the simulation engine, 3 SuperNodes
    run_local_simulation(
        {
            "capability": "stip",
            "stip.server-bundle": str(instance.server),
            "stip.user-bundle": str(instance.user),
            "stip.prompt": PROMPTS[0],
            "stip.max-new-tokens": 32,
            "stip.output-dir": str(out),
            "output-dir": str(tmp_path / "server"),
        },
        num_supernodes=3,
        client_app=owners.app,
    )

    # Assert: both good owners generated exactly the plaintext continuation
    expected = plaintext_text(family, PROMPTS[0], 32)
    for partition in (0, 1):
        record = json.loads((out / f"stip-partition-{partition}.json").read_text())
        assert record["text"] == expected
    assert not (out / "stip-partition-2.json").exists()
    # the faulty one was dropped at the first exchange; the others went on
    results = read_outputs(tmp_path / "server", checkpoints=False)
    summary = results["summary"]
    assert summary["generated-tokens"] == 64
    assert summary["rounds"] == 33
    assert len(summary["dropped-nodes"]) == 1
    assert [r["failures"] for r in results["rounds"][:2]] == [1, 0]
    assert results["rounds"][1]["extra"]["clients"] == 2
    # Nothing the server received equals any plaintext embedding
    table = tiny_model(family).get_input_embeddings().weight.detach().numpy()
    sent_arrays = owners.sent
    assert len(sent_arrays) == 2 * 32  # prompt + 31 tokens per good owner
    for sent in sent_arrays:
        for row in sent:
            assert not np.any(np.all(np.isclose(table, row, atol=0), axis=1))


def test_flwr_run_serves_two_supernodes_and_text_equals_plaintext(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    # Prepare
    save_with_tokenizer("gpt2", tmp_path / "model")
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
        f'capability="stip" stip.server-bundle="{instance.server}" '
        f'stip.user-bundle="{instance.user}" stip.prompt="{PROMPTS[1]}" '
        f'stip.max-new-tokens=16 stip.output-dir="{out}" '
        f'output-dir="{tmp_path / "server"}"',
    )
    status = wait_for_run(run_id, "local", local_env, timeout=600, stream_logs=False)

    # Assert
    assert status["status"] == FINISHED_COMPLETED, status
    expected = plaintext_text("gpt2", PROMPTS[1], 16)
    texts = [json.loads(p.read_text())["text"] for p in sorted(out.glob("*.json"))]
    assert texts == [expected, expected]
