"""The data owner's side of STIP (``query.stip_step``).

The user bundle (``pi``, ``pi_c``, embedding, tokenizer) stays on the device;
only permuted embeddings leave it and only permuted logits arrive.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from edgecloud.capabilities.stip import keys as k
from edgecloud.capabilities.stip.config import StipConfig, resolve_bundle
from edgecloud.settings import NodeConfig, RunSettings, load_client_settings
from edgecloud.workflow.records import from_record, to_record
from edgecloud.workflow.seeds import generation_seed

if TYPE_CHECKING:  # transformers loads only when a STIP message arrives
    from edgecloud.stip.runtime import StipUser

_STATE = "stip-client"  # context.state entry: the generation so far (JSON)


def register(app: ClientApp) -> None:
    """Register the data owner's step handler."""
    app.query(k.STEP_ACTION)(stip_step)


@functools.lru_cache(maxsize=4)
def _user(bundle: Path) -> StipUser:
    from edgecloud.stip.runtime import StipUser

    return StipUser(bundle)


@functools.lru_cache(maxsize=4)
def _tokenizer(bundle: Path) -> Any:
    if not any(
        (bundle / name).is_file()
        for name in ("tokenizer.json", "vocab.json", "vocab.txt")
    ):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundle, local_files_only=True)


def prompt_ids(prompt: str, tokenizer: Any) -> list[int]:
    """Token ids of ``prompt``: through the bundle's tokenizer, or ``"3,1,4"``."""
    if tokenizer is not None:
        return [int(t) for t in tokenizer(prompt)["input_ids"]]
    try:
        ids = [int(part) for part in prompt.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"stip.prompt {prompt!r} is not comma-separated token ids and the user "
            "bundle has no tokenizer; expected e.g. '3,1,4' or a bundle with "
            "tokenizer files"
        ) from None
    if not ids:
        raise ValueError("stip.prompt is empty; expected at least one token")
    return ids


def _inputs(
    user: StipUser, settings: RunSettings[StipConfig], node: NodeConfig, ids: list[int]
) -> torch.Tensor:
    if user.family.name == "vit":  # an image of the configured size (synthetic)
        size = int(user.config.image_size)
        gen = torch.Generator().manual_seed(settings.common.seed + node.partition_id)
        return torch.randn(1, int(user.config.num_channels), size, size, generator=gen)
    vocab = int(user.config.vocab_size)
    if min(ids) < 0 or max(ids) >= vocab:
        raise ValueError(f"prompt token ids {ids} outside the vocabulary [0, {vocab})")
    return torch.tensor([ids])


def stip_step(msg: Message, context: Context) -> Message:
    """Answer one STIP exchange: permuted embeddings out, permuted logits in."""
    settings: RunSettings[StipConfig] = load_client_settings(
        context.run_config, context.node_config, StipConfig
    )
    config = settings.section
    node = NodeConfig.from_node_config(context.node_config)
    source = (
        "node config"
        if StipConfig.key_of("user_bundle") in (context.node_config)
        else "run-config"
    )
    bundle = resolve_bundle(
        StipConfig.key_of("user_bundle"), config.user_bundle, "user", source
    )
    user, tokenizer = _user(bundle), _tokenizer(bundle)
    control = msg.content.config_records[k.CONTROL]
    if control.get(k.PHASE) == k.PHASE_START:
        ids = prompt_ids(config.prompt, tokenizer)
        inputs = _inputs(user, settings, node, ids)
        state: dict[str, Any] = {"prompt": ids, "generated": []}
        return _reply(msg, context, state, user.protect(user.embed(inputs))[0])

    saved = context.state.config_records.get(_STATE)
    if saved is None:
        raise ValueError("a STIP continue message arrived before the start message")
    state = json.loads(str(saved["json"]))
    logits = user.reveal(
        torch.from_numpy(
            from_record(msg.content.array_records[k.LOGITS])[k.LOGITS_ARRAY]
        )
    )
    if user.family.output != "lm":  # classifier: one answer, then done
        state["predictions"] = logits.argmax(-1).reshape(-1).tolist()
        _write_output(config, node, state, tokenizer)
        return _reply(msg, context, state, None)
    step = int(cast(int, control[k.ROUND]))
    sampler = torch.Generator().manual_seed(
        generation_seed(settings.common.seed, node.partition_id, step)
    )
    from edgecloud.stip.runtime import sample_next

    token = sample_next(
        logits,
        greedy=config.sampling == "greedy",
        temperature=config.temperature,
        top_k=config.top_k,
        generator=sampler,
    )
    state["generated"].append(token)
    if len(state["generated"]) >= config.max_new_tokens:
        _write_output(config, node, state, tokenizer)
        return _reply(msg, context, state, None)
    embeds = user.protect(user.embed(torch.tensor([[token]])))[0]
    return _reply(msg, context, state, embeds)


def _reply(
    msg: Message, context: Context, state: dict[str, Any], embeds: torch.Tensor | None
) -> Message:
    content = RecordDict({k.CONTROL: ConfigRecord({k.DONE: embeds is None})})
    if embeds is not None:
        content[k.EMBEDS] = to_record(
            {k.EMBEDS_ARRAY: np.asarray(embeds.numpy(), dtype=np.float32)}
        )
    # State is written only once the reply is complete (a failure keeps the old).
    context.state[_STATE] = ConfigRecord({"json": json.dumps(state)})
    return Message(content, reply_to=msg)


def _write_output(
    config: StipConfig, node: NodeConfig, state: dict[str, Any], tokenizer: Any
) -> None:
    if not config.output_dir:
        return
    out = Path(config.output_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    record = dict(state)
    if tokenizer is not None and state.get("generated"):
        record["text"] = tokenizer.decode(state["generated"])
    path = out / f"stip-partition-{node.partition_id}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
