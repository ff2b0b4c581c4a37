"""The STIP transform: secret permutation sets and permuted model weights.

Thesis section 4.4.1, corrected (see the README): norm weights and biases move
with ``pi``; attention heads stay intact (whole-head moves plus within-head
orders, none under rotary embeddings, queries move with their KV group); SwiGLU's
gate and up projections share one hidden permutation; the output head always
carries ``pi_c``; the server never holds the embedding table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edgecloud.stip.families import Rule, family_of
from edgecloud.stip.permutations import (
    IndexArray,
    attention_permutations,
    inverse,
    random_permutation,
)

# Keys of the permutations the data owner receives; everything else stays with
# the model developer.
USER_KEYS = ("pi", "pi_c")


@dataclass(frozen=True)
class PermutationSet:
    """All secret permutations of one model instance, by name.

    ``pi`` (hidden size) and ``pi_c`` (output size) are shared with data owners;
    ``layers.{i}.{q,k,v,o,mlp}``, ``pool``, ``layers.{i}.expert`` and
    ``layers.{i}.expert_hidden`` (experts x hidden) stay with the developer.
    """

    perms: Mapping[str, IndexArray]

    @property
    def pi(self) -> IndexArray:
        """Residual-stream permutation (shared with users)."""
        return self.perms["pi"]

    @property
    def pi_c(self) -> IndexArray:
        """Output-head permutation (shared with users)."""
        return self.perms["pi_c"]

    def user_part(self) -> dict[str, IndexArray]:
        """What a data owner needs: ``pi`` and ``pi_c`` only."""
        return {k: self.perms[k] for k in USER_KEYS}

    @classmethod
    def generate(cls, config: Any, rng: np.random.Generator) -> PermutationSet:
        """Fresh random permutations for a model of ``config``."""
        family = family_of(config)
        hidden = int(config.hidden_size)
        perms: dict[str, IndexArray] = {
            "pi": random_permutation(hidden, rng),
            "pi_c": random_permutation(family.num_outputs(config), rng),
        }
        layout = family.attention_layout(config)
        mlp = family.mlp_hidden(config)
        experts = family.num_experts(config)
        for i in range(int(config.num_hidden_layers)):
            att = attention_permutations(layout, rng)
            perms.update(
                {
                    f"layers.{i}.q": att.q,
                    f"layers.{i}.k": att.k,
                    f"layers.{i}.v": att.v,
                    f"layers.{i}.o": att.o,
                }
            )
            if experts:
                perms[f"layers.{i}.expert"] = random_permutation(experts, rng)
                perms[f"layers.{i}.expert_hidden"] = np.stack(
                    [random_permutation(mlp, rng) for _ in range(experts)]
                )
            else:
                perms[f"layers.{i}.mlp"] = random_permutation(mlp, rng)
        if any(r.axes.count("pool") for r in family.rules):
            perms["pool"] = random_permutation(hidden, rng)
        return cls(perms)


def _role(perms: PermutationSet, role: str, layer: str | None) -> IndexArray:
    p = perms.perms
    if role in ("pi", "pi_c", "pool"):
        return p[role]
    if layer is None:
        raise ValueError(f"role {role!r} needs a layer index")
    if role == "qkv":  # GPT-2 fused c_attn output: [q | k | v]
        q, k, v = p[f"layers.{layer}.q"], p[f"layers.{layer}.k"], p[f"layers.{layer}.v"]
        return np.concatenate([q, len(q) + k, len(q) + len(k) + v])
    if role == "expert_gate_up":  # (experts, 2 * hidden): same order for gate and up
        hidden = p[f"layers.{layer}.expert_hidden"]
        return np.concatenate([hidden, hidden.shape[1] + hidden], axis=1)
    return p[f"layers.{layer}.{role}"]


def _apply(
    tensor: torch.Tensor,
    axes: tuple[str | None, ...],
    perms: PermutationSet,
    layer: str | None,
    rule: Rule,
) -> torch.Tensor:
    if tensor.dim() != len(axes):
        raise ValueError(
            f"{rule.key}: tensor has shape {tuple(tensor.shape)}; the family rule "
            f"expects {len(axes)} axes {axes}"
        )
    out = tensor
    for axis, role in enumerate(axes):
        if role is None:
            continue
        index = _role(perms, role, layer)
        if index.ndim == 2:  # one permutation per expert (axis 0 is the expert)
            if axis == 0:
                raise ValueError(f"{rule.key}: per-expert permutation on axis 0")
            rows = [
                out[e].index_select(axis - 1, torch.from_numpy(index[e]))
                for e in range(out.shape[0])
            ]
            out = torch.stack(rows)
        else:
            if out.shape[axis] != len(index):
                raise ValueError(
                    f"{rule.key}: axis {axis} has size {out.shape[axis]} but "
                    f"permutation {role!r} has {len(index)}"
                )
            out = out.index_select(axis, torch.from_numpy(index))
    return out.contiguous()


def permute_state_dict(
    state: Mapping[str, torch.Tensor], config: Any, perms: PermutationSet
) -> dict[str, torch.Tensor]:
    """The server's weights: every rule applied; client-side weights zeroed.

    Raises
    ------
    ValueError
        If a weight matches no rule of the family (a variant this transform does
        not know would otherwise reach the server unprotected).
    """
    family = family_of(config)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key in family.client_keys:
            out[key] = torch.zeros_like(tensor)
            continue
        matched = family.rule_for(key)
        if matched is None:
            raise ValueError(
                f"weight {key!r} of a {family.name} model matches no STIP rule; "
                "expected every server-side weight to be described in "
                "edgecloud/stip/families.py"
            )
        rule, layer = matched
        out[key] = _apply(tensor, rule.axes, perms, layer, rule)
    return out


def permute_features(x: torch.Tensor, pi: IndexArray) -> torch.Tensor:
    """``x @ pi``: the data owner's step before upload (``(..., d)``)."""
    return x.index_select(-1, torch.from_numpy(pi).to(x.device))


def unpermute_outputs(y: torch.Tensor, pi_c: IndexArray) -> torch.Tensor:
    """``y @ pi_c^T``: the data owner's step after download (``(..., classes)``)."""
    return y.index_select(-1, torch.from_numpy(inverse(pi_c)).to(y.device))
