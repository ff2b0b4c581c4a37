"""STIP at inference time: the model server (P2) and the data owner (P3).

The server runs the permuted model on permuted embeddings and keeps one KV cache
per client session; sessions at the same position are batched into one forward.
The data owner embeds locally, permutes, and un-permutes what comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel

from edgecloud.stip.bundles import load_checkpoint, load_user_tensors
from edgecloud.stip.families import Family, family_of
from edgecloud.stip.transform import permute_features, unpermute_outputs


@dataclass
class _Session:
    length: int = 0
    cache: DynamicCache = field(default_factory=DynamicCache)


def _kv(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    # transformers types cache layers as a union (linear-attention layers carry no
    # keys/values); a transformer's DynamicCache layers always carry both.
    layers: list[Any] = list(cache.layers)
    return [(layer.keys, layer.values) for layer in layers]


def _slice_cache(cache: DynamicCache, row: int) -> DynamicCache:
    # One session's rows of a batched cache (views: no copy until the next concat)
    return DynamicCache([(k[row : row + 1], v[row : row + 1]) for k, v in _kv(cache)])


class StipServer:
    """P2: serves a server bundle. It never sees a permutation.

    Parameters
    ----------
    directory : pathlib.Path
        The server bundle (``save_pretrained`` output of the developer tool).
    device : str
        Torch device for the forward passes.
    max_sessions : int
        Open generation sessions kept (oldest dropped first).
    """

    def __init__(
        self, directory: Path, device: str = "cpu", max_sessions: int = 256
    ) -> None:
        # strict: a bundle that does not match its config is refused, not
        # silently completed with random weights
        model: Any = load_checkpoint(directory, "STIP server bundle")
        self.model: PreTrainedModel = model.to(device)
        self.family: Family = family_of(self.model.config)
        self.device = device
        self.max_sessions = max_sessions
        self.sessions: dict[str, _Session] = {}

    @property
    def is_generator(self) -> bool:
        """Language models generate token by token; classifiers answer once."""
        return self.family.output == "lm"

    @property
    def hidden_size(self) -> int:
        """Width of the permuted embeddings the server accepts."""
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def forward(
        self,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Permuted logits of permuted embeddings ``(B, T, d)``, no cache.

        ``(B, T, vocab)`` for language models, ``(B, labels)`` for classifiers;
        ``attention_mask`` ``(B, T)`` marks padding with 0. ``token_type_ids``
        ``(B, T)`` only where the server holds the token-type table (BERT); GPT-2
        embeds token types with the table only the data owner has, so there they
        are added by :meth:`StipUser.embed` and refused here.

        Raises
        ------
        ValueError
            For embeddings of the wrong shape, or ``token_type_ids`` for a family
            whose server cannot embed them.
        """
        if embeds.dim() != 3 or embeds.shape[-1] != self.hidden_size:
            raise ValueError(
                f"embeddings have shape {tuple(embeds.shape)}; expected "
                f"(batch, tokens, {self.hidden_size})"
            )
        if token_type_ids is not None and self.family.token_types != "server":
            raise ValueError(_token_types_refusal(self.family))
        x = embeds.to(self.device)
        if self.family.name == "vit":
            hidden = x
            vit: Any = self.model.vit
            for layer in vit.layers:
                hidden = layer(hidden, None)
            hidden = vit.layernorm(hidden)
            logits: torch.Tensor = self.model.classifier(hidden[:, 0])  # type: ignore[operator]
            return logits
        out = self.model(
            inputs_embeds=x,
            attention_mask=None
            if attention_mask is None
            else attention_mask.to(self.device),
            token_type_ids=None
            if token_type_ids is None
            else token_type_ids.to(self.device),
        )
        result: torch.Tensor = out.logits
        return result

    @torch.no_grad()
    def step(self, requests: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Extend each session by its new permuted embeddings ``(T_new, d)``.

        Returns the permuted logits ``(vocab,)`` at each session's last position.
        Sessions with the same cache length and the same number of new positions
        run as one batch (no padding, so no attention mask is needed).
        """
        groups: dict[tuple[int, int], list[str]] = {}
        for sid, embeds in requests.items():
            if embeds.dim() != 2 or embeds.shape[1] != self.hidden_size:
                raise ValueError(
                    f"session {sid!r}: embeddings have shape {tuple(embeds.shape)}; "
                    f"expected (new_tokens, {self.hidden_size})"
                )
            session = self.sessions.get(sid, _Session())
            groups.setdefault((session.length, embeds.shape[0]), []).append(sid)
        results: dict[str, torch.Tensor] = {}
        for (length, new), sids in groups.items():
            batch = torch.stack([requests[s] for s in sids]).to(self.device)
            cache = self._group_cache(sids, length)
            positions = torch.arange(length, length + new, device=self.device)
            out = self.model(
                inputs_embeds=batch,
                past_key_values=cache,
                position_ids=positions.expand(len(sids), -1),
                use_cache=True,
            )
            for b, sid in enumerate(sids):
                self.sessions.pop(sid, None)  # re-insert: most recently used last
                own = cache if len(sids) == 1 else _slice_cache(cache, b)
                self.sessions[sid] = _Session(length + new, own)
                results[sid] = out.logits[b, -1]
        while len(self.sessions) > self.max_sessions:
            self.sessions.pop(next(iter(self.sessions)))
        return results

    def _group_cache(self, sids: list[str], length: int) -> DynamicCache:
        """The KV cache a group of sessions at position ``length`` extends.

        A lone session extends its own cache in place; a batch concatenates its
        members' caches along the batch axis.
        """
        if not length:
            return DynamicCache()
        caches = [self.sessions[s].cache for s in sids]
        if len(caches) == 1:
            return caches[0]
        per_session = [_kv(c) for c in caches]  # [session][layer] -> (keys, values)
        return DynamicCache(
            [
                (torch.cat([kv[0] for kv in layer]), torch.cat([kv[1] for kv in layer]))
                for layer in zip(*per_session, strict=True)
            ]
        )

    def end(self, session_id: str) -> None:
        """Forget a session's KV cache."""
        self.sessions.pop(session_id, None)


def _token_types_refusal(family: Family) -> str:
    if family.token_types == "client":
        return (
            f"token_type_ids given to a {family.name} server, which embeds token "
            "types with the embedding table only the data owner holds (the "
            "server's rows are zeros); expected them added on the device: "
            "StipUser.embed(ids, token_type_ids=...)"
        )
    return (
        f"token_type_ids given to a {family.name} server; the model has no "
        "token-type embedding, expected None"
    )


class StipUser:
    """P3: embeds locally, permutes before upload, un-permutes after download."""

    def __init__(self, directory: Path) -> None:
        tensors, config = load_user_tensors(directory)
        self.config = config
        self.family = family_of(config)
        self.pi = tensors["pi"].numpy()
        self.pi_c = tensors["pi_c"].numpy()
        self.embedding = _user_embedding(self.family, config, tensors).eval()
        self.directory = directory

    @torch.no_grad()
    def embed(
        self, inputs: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Plain embeddings ``(B, T, d)`` of token ids ``(B, T)`` or pixels.

        ``token_type_ids`` ``(B, T)``: families that embed token types with the
        token table (GPT-2: ``wte(ids) + wte(token_type_ids)``) add them here,
        because the server does not hold that table. BERT's token types go to
        :meth:`StipServer.forward`, whose table they index.

        Raises
        ------
        ValueError
            If ``token_type_ids`` are given for a family that does not embed
            them on the device, or do not match ``inputs`` in shape.
        """
        out: torch.Tensor = self.embedding(inputs)
        if token_type_ids is None:
            return out
        if self.family.token_types != "client":
            raise ValueError(
                f"token_type_ids given to a {self.family.name} data owner; "
                + (
                    "expected them passed to the server's forward, which holds "
                    "the token-type table"
                    if self.family.token_types == "server"
                    else "the model has no token-type embedding, expected None"
                )
            )
        if token_type_ids.shape != inputs.shape:
            raise ValueError(
                f"token_type_ids have shape {tuple(token_type_ids.shape)}; expected "
                f"the shape of the token ids {tuple(inputs.shape)}"
            )
        types: torch.Tensor = self.embedding(token_type_ids)
        return out + types

    def protect(self, embeds: torch.Tensor) -> torch.Tensor:
        """``x @ pi``: what leaves the device."""
        return permute_features(embeds, self.pi)

    def reveal(self, permuted_logits: torch.Tensor) -> torch.Tensor:
        """``y' @ pi_c^T``: the model's real output."""
        return unpermute_outputs(permuted_logits, self.pi_c)


def _user_embedding(
    family: Family, config: Any, tensors: Mapping[str, torch.Tensor]
) -> nn.Module:
    weights = {
        k.removeprefix("embedding."): v
        for k, v in tensors.items()
        if k.startswith("embedding.")
    }
    if family.name == "vit":
        from transformers.models.vit.modeling_vit import ViTEmbeddings

        module: nn.Module = ViTEmbeddings(config)
        module.load_state_dict(
            {k.removeprefix("vit.embeddings."): v for k, v in weights.items()}
        )
        return module
    (table,) = weights.values()
    embedding = nn.Embedding(*table.shape)
    embedding.weight = nn.Parameter(table, requires_grad=False)
    return embedding


def sample_next(
    logits: torch.Tensor,
    greedy: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
) -> int:
    """The next token from real (un-permuted) logits ``(vocab,)``."""
    if greedy:
        return int(logits.argmax())
    scores = logits.float() / max(temperature, 1e-6)
    if top_k:
        kth = torch.topk(scores, min(top_k, scores.numel())).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))
