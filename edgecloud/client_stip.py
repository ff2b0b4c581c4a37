"""Flower glue: the data owner's side of STIP (``query.stip_step``).

The user bundle (``pi``, ``pi_c``, embedding, tokenizer) stays on the device;
only permuted embeddings leave it and only permuted logits arrive.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from edgecloud import protocol as p
from edgecloud.config import NodeConfig, RunConfig
from edgecloud.stip.runtime import StipUser, sample_next

_STATE = "stip-client"


@functools.lru_cache(maxsize=4)
def _user(bundle: str) -> StipUser:
    return StipUser(Path(bundle).expanduser())


@functools.lru_cache(maxsize=4)
def _tokenizer(bundle: str) -> Any:
    path = Path(bundle).expanduser()
    if not any(
        (path / name).is_file()
        for name in ("tokenizer.json", "vocab.json", "vocab.txt")
    ):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def prompt_ids(prompt: str, tokenizer: Any) -> list[int]:
    """Token ids of ``prompt``: through the bundle's tokenizer, or ``"3,1,4"``."""
    if tokenizer is not None:
        return [int(t) for t in tokenizer(prompt)["input_ids"]]
    try:
        ids = [int(part) for part in prompt.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"stip-prompt {prompt!r} is not comma-separated token ids and the user "
            "bundle has no tokenizer; expected e.g. '3,1,4' or a bundle with "
            "tokenizer files"
        ) from None
    if not ids:
        raise ValueError("stip-prompt is empty; expected at least one token")
    return ids


def _inputs(
    user: StipUser, cfg: RunConfig, node: NodeConfig, ids: list[int]
) -> torch.Tensor:
    if user.family.name == "vit":  # an image of the configured size (synthetic)
        size = int(user.config.image_size)
        gen = torch.Generator().manual_seed(cfg.seed + node.partition_id)
        return torch.randn(1, int(user.config.num_channels), size, size, generator=gen)
    vocab = int(user.config.vocab_size)
    if min(ids) < 0 or max(ids) >= vocab:
        raise ValueError(f"prompt token ids {ids} outside the vocabulary [0, {vocab})")
    return torch.tensor([ids])


def stip_step(msg: Message, context: Context) -> Message:
    """Answer one STIP round: permuted embeddings out, permuted logits in."""
    cfg = RunConfig.from_run_config(context.run_config)
    node = NodeConfig.from_node_config(context.node_config)
    bundle = node.stip_user_bundle or cfg.stip_user_bundle
    if not bundle:
        raise ValueError(
            "no STIP user bundle: set run-config 'stip-user-bundle' or node config "
            "'stip-user-bundle' to the developer tool's user/ directory"
        )
    user, tokenizer = _user(bundle), _tokenizer(bundle)
    control = msg.content.config_records[p.STIP]
    generator = user.family.output == "lm"
    if control.get("phase") == "start":
        ids = prompt_ids(node.stip_prompt or cfg.stip_prompt, tokenizer)
        inputs = _inputs(user, cfg, node, ids)
        state = {"prompt": ids, "generated": []}
        return _reply(msg, context, state, user.protect(user.embed(inputs))[0])

    saved = context.state.config_records.get(_STATE)
    if saved is None:
        raise ValueError("a STIP continue message arrived before the start message")
    state = json.loads(str(saved["json"]))
    logits = user.reveal(
        torch.from_numpy(msg.content.array_records[p.STIP_LOGITS]["logits"].numpy())
    )
    if not generator:  # classifier: one answer, then done
        state["predictions"] = logits.argmax(-1).reshape(-1).tolist()
        _write_output(cfg, node, state, tokenizer)
        return _reply(msg, context, state, None)
    rnd = int(cast(int, control["round"]))
    sampler = torch.Generator().manual_seed(
        cfg.seed * 100_003 + node.partition_id * 1_009 + rnd
    )
    token = sample_next(
        logits,
        greedy=cfg.stip_sampling == "greedy",
        temperature=cfg.stip_temperature,
        top_k=cfg.stip_top_k,
        generator=sampler,
    )
    state["generated"].append(token)
    if len(state["generated"]) >= cfg.stip_max_new_tokens:
        _write_output(cfg, node, state, tokenizer)
        return _reply(msg, context, state, None)
    embeds = user.protect(user.embed(torch.tensor([[token]])))[0]
    return _reply(msg, context, state, embeds)


def _reply(
    msg: Message, context: Context, state: dict[str, Any], embeds: torch.Tensor | None
) -> Message:
    content = RecordDict({p.STIP: ConfigRecord({"done": embeds is None})})
    if embeds is not None:
        content[p.STIP_EMBEDS] = ArrayRecord(
            {"embeds": Array(np.ascontiguousarray(embeds.numpy(), dtype=np.float32))}
        )
    # State is written only once the reply is complete (a failure keeps the old).
    context.state[_STATE] = ConfigRecord({"json": json.dumps(state)})
    return Message(content, reply_to=msg)


def _write_output(
    cfg: RunConfig, node: NodeConfig, state: dict[str, Any], tokenizer: Any
) -> None:
    if not cfg.stip_output_dir:
        return
    out = Path(cfg.stip_output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    record = dict(state)
    if tokenizer is not None and state.get("generated"):
        record["text"] = tokenizer.decode(state["generated"])
    path = out / f"stip-partition-{node.partition_id}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
