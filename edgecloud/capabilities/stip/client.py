"""The data owner's side of STIP (``query.stip_step``).

The user bundle (``pi``, ``pi_c``, embedding, tokenizer) stays on the device;
only permuted embeddings leave it and only permuted logits arrive.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.typing import ConfigRecordValues
from flwr.clientapp import ClientApp

from edgecloud.capabilities.stip import keys as k
from edgecloud.capabilities.stip.config import StipConfig, resolve_bundle
from edgecloud.channel import (
    CLIENT_TO_SERVER,
    ChannelError,
    FrameContext,
    SecureChannel,
)
from edgecloud.channel.envelope import open_control, pack, seal_control, unpack
from edgecloud.settings import NodeConfig, RunSettings, load_client_settings
from edgecloud.workflow.records import from_record, to_record
from edgecloud.workflow.seeds import generation_seed
from edgecloud.workflow.stream import (
    SESSION,
    STATUS,
    STATUS_DONE,
    connect_client,
    end_session,
    session_messages,
)

if TYPE_CHECKING:  # transformers loads only when a STIP message arrives
    from edgecloud.stip.runtime import StipUser

_STATE = "stip-client"  # context.state entry: the generation so far (JSON)


def register(app: ClientApp) -> None:
    """Register the data owner's per-exchange and per-generation handlers."""
    app.query(k.STEP_ACTION)(stip_step)
    app.query(k.SESSION_ACTION)(stip_session)


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


@dataclass
class DataOwner:
    """One data owner's generation (or classification), whatever carries it."""

    settings: RunSettings[StipConfig]
    node: NodeConfig
    user: StipUser
    tokenizer: Any

    @classmethod
    def of(cls, context: Context) -> DataOwner:
        """Settings, node facts and the (checked) user bundle of this node."""
        settings: RunSettings[StipConfig] = load_client_settings(
            context.run_config, context.node_config, StipConfig
        )
        key = StipConfig.key_of("user_bundle")
        source = "node config" if key in context.node_config else "run-config"
        bundle = resolve_bundle(key, settings.section.user_bundle, "user", source)
        node = NodeConfig.from_node_config(context.node_config)
        return cls(settings, node, _user(bundle), _tokenizer(bundle))

    def start(self) -> tuple[dict[str, Any], torch.Tensor]:
        """The generation's state and the permuted prompt (or input) embeddings."""
        ids = prompt_ids(self.settings.section.prompt, self.tokenizer)
        inputs = _inputs(self.user, self.settings, self.node, ids)
        state: dict[str, Any] = {"prompt": ids, "generated": []}
        return state, self.user.protect(self.user.embed(inputs))[0]

    def advance(
        self, state: dict[str, Any], permuted_logits: npt.NDArray[Any], step: int
    ) -> torch.Tensor | None:
        """Un-permute, pick the next token; its permuted embedding or None (done).

        Updates ``state`` in place; writes the output file when done.
        """
        config = self.settings.section
        logits = self.user.reveal(torch.from_numpy(permuted_logits))
        if self.user.family.output != "lm":  # classifier: one answer, then done
            state["predictions"] = logits.argmax(-1).reshape(-1).tolist()
            _write_output(config, self.node, state, self.tokenizer)
            return None
        from edgecloud.stip.runtime import sample_next

        sampler = torch.Generator().manual_seed(
            generation_seed(self.settings.common.seed, self.node.partition_id, step)
        )
        token = sample_next(
            logits,
            greedy=config.sampling == "greedy",
            temperature=config.temperature,
            top_k=config.top_k,
            generator=sampler,
        )
        state["generated"].append(token)
        if len(state["generated"]) >= config.max_new_tokens:
            _write_output(config, self.node, state, self.tokenizer)
            return None
        embeds: torch.Tensor = self.user.protect(
            self.user.embed(torch.tensor([[token]]))
        )[0]
        return embeds


def stip_step(msg: Message, context: Context) -> Message:
    """Answer one STIP exchange: permuted embeddings out, permuted logits in."""
    owner = DataOwner.of(context)
    control = msg.content.config_records[k.CONTROL]
    if control.get(k.PHASE) == k.PHASE_START:
        state, embeds = owner.start()
        return _reply(msg, context, state, embeds)
    saved = context.state.config_records.get(_STATE)
    if saved is None:
        raise ValueError("a STIP continue message arrived before the start message")
    state = json.loads(str(saved["json"]))
    logits = from_record(msg.content.array_records[k.LOGITS])[k.LOGITS_ARRAY]
    following = owner.advance(state, logits, int(cast(int, control[k.ROUND])))
    return _reply(msg, context, state, following)


def stip_session(msg: Message, context: Context) -> Message:
    """A whole generation over the model server's streamed session."""
    owner = DataOwner.of(context)
    config = owner.settings.section
    run_id = int(cast(int, msg.content.config_records[k.CONTROL][k.RUN_ID]))
    ca = Path(config.stream_ca).expanduser().read_bytes() if config.stream_ca else None
    connected = connect_client(
        msg,
        run_id=run_id,
        node_id=context.node_id,
        ca_pem=ca,
        max_message_bytes=config.stream_max_message_mib << 20,
    )
    if isinstance(connected, Message):  # unreachable; auto: over messages instead
        return connected
    client, keys = connected
    channel = SecureChannel(keys, send_direction=CLIENT_TO_SERVER)
    state: dict[str, Any] = {}
    timeout = owner.settings.common.round_timeout
    with client:
        for exchange, received in enumerate(session_messages(client, timeout)):
            where = FrameContext(run_id, context.node_id, k.MSG_SESSION, 0, exchange)
            frames = unpack(received)
            control = open_control(channel, frames[0], where)
            following: torch.Tensor | None
            if control.get(k.PHASE) == k.PHASE_START:
                state, following = owner.start()
            else:
                if len(frames) < 2:
                    raise ChannelError("a continue message carries no logits")
                logits = channel.open(frames[1], where, {k.LOGITS_ARRAY: None})
                step = int(control[k.ROUND])
                following = owner.advance(state, logits[k.LOGITS_ARRAY], step)
            sealed = [seal_control(channel, {k.DONE: following is None}, where)]
            if following is not None:
                values = np.asarray(following.numpy(), dtype=np.float32)
                sealed.append(channel.seal({k.EMBEDS_ARRAY: values}, where))
            client.send(pack(sealed))
            if following is None:
                end_session(client, timeout)
                break
    context.state[_STATE] = ConfigRecord({"json": json.dumps(state)})
    result: dict[str, ConfigRecordValues] = {
        STATUS: STATUS_DONE,
        k.GENERATED: len(state.get("generated", [])),
    }
    return Message(RecordDict({SESSION: ConfigRecord(result)}), reply_to=msg)


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
