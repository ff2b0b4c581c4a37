"""STIP equivalence for every family, and the thesis' mistakes as failing controls."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import PreTrainedModel

from edgecloud.stip.families import FAMILIES, family_of
from edgecloud.stip.permutations import (
    AttentionLayout,
    attention_permutations,
    inverse,
    is_permutation,
    random_permutation,
)
from edgecloud.stip.transform import (
    PermutationSet,
    permute_features,
    permute_state_dict,
    unpermute_outputs,
)
from tests.stip_models import FAMILY_NAMES, LM_FAMILIES, VOCAB, tiny_model, tiny_qwen2

TOLERANCE = 1e-4


def _server(model: PreTrainedModel, state: dict[str, torch.Tensor]) -> PreTrainedModel:
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.tie_word_embeddings = False
    server = model.__class__(config).eval()
    server.load_state_dict(state)
    return server


def _inputs(family: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    if family == "vit":
        return {"pixel_values": torch.randn(3, 3, 16, 16, generator=gen)}
    ids = torch.randint(0, VOCAB, (3, 9), generator=gen)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0  # right padding
    mask[2, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _stip_logits(
    model: PreTrainedModel, server: PreTrainedModel, perms: PermutationSet, family: str
) -> torch.Tensor:
    inputs = _inputs(family)
    with torch.no_grad():
        if family == "vit":
            x = permute_features(model.vit.embeddings(inputs["pixel_values"]), perms.pi)
            hidden = x
            for layer in server.vit.layers:
                hidden = layer(hidden, None)
            out = server.classifier(server.vit.layernorm(hidden)[:, 0])
        else:
            x = permute_features(
                model.get_input_embeddings()(inputs["input_ids"]), perms.pi
            )
            out = server(
                inputs_embeds=x, attention_mask=inputs["attention_mask"]
            ).logits
    return unpermute_outputs(out, perms.pi_c)


def _plain_logits(model: PreTrainedModel, family: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**_inputs(family)).logits


def _valid(family: str, logits: torch.Tensor) -> torch.Tensor:
    # compare at non-padded positions only (padding outputs are unconstrained)
    if family in LM_FAMILIES:
        return logits[_inputs(family)["attention_mask"].bool()]
    return logits


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_unpermuted_stip_logits_equal_plaintext(family: str) -> None:
    # Prepare: random weights everywhere, norms and biases included
    model = tiny_model(family)
    perms = PermutationSet.generate(model.config, np.random.default_rng(7))

    # Execute
    server = _server(model, permute_state_dict(model.state_dict(), model.config, perms))
    stip = _stip_logits(model, server, perms, family)

    # Assert: batch of 3 with padding, max |delta| within fp32 noise
    plain = _plain_logits(model, family)
    delta = (_valid(family, stip) - _valid(family, plain)).abs().max().item()
    assert delta <= TOLERANCE, delta


@pytest.mark.parametrize(
    "num_kv_heads",
    [
        1,  # multi-query: every query head reads the one KV head
        2,  # grouped-query: two query heads per KV head
    ],
)
def test_qwen2_attention_biases_keep_stip_exact(num_kv_heads: int) -> None:
    # Prepare: LLaMA family with q/k/v biases (Qwen2), random everywhere
    model = tiny_qwen2(num_kv_heads)
    perms = PermutationSet.generate(model.config, np.random.default_rng(7))

    # Execute
    server = _server(model, permute_state_dict(model.state_dict(), model.config, perms))
    stip = _stip_logits(model, server, perms, "llama")

    # Assert
    plain = _plain_logits(model, "llama")
    delta = (_valid("llama", stip) - _valid("llama", plain)).abs().max().item()
    assert delta <= TOLERANCE, delta


def _break(family: str, mistake: str) -> float:
    """Max |delta| after transforming with one of the known mistakes."""
    model = tiny_model(family)
    config = model.config
    rng = np.random.default_rng(7)
    perms = PermutationSet.generate(config, rng)
    if mistake == "within-head-rotary":  # permute q/k dims inside heads (LLaMA)
        layout = dataclasses.replace(
            family_of(config).attention_layout(config), rotary=False
        )
        att = attention_permutations(layout, rng)
        perms = PermutationSet(
            {**perms.perms, "layers.0.q": att.q, "layers.0.k": att.k}
        )
    if mistake == "heads-not-intact":  # one flat permutation over all q/k dims
        flat = random_permutation(len(perms.perms["layers.0.q"]), rng)
        perms = PermutationSet({**perms.perms, "layers.0.q": flat, "layers.0.k": flat})
    state = permute_state_dict(model.state_dict(), config, perms)
    original = model.state_dict()
    if mistake == "norms-not-permuted":  # the public STIP code's bug
        for key in state:
            if "norm" in key.lower() or ".ln_" in key:
                state[key] = original[key].clone()
    if mistake == "swiglu-only-down":  # the thesis formula: gate/up not permuted
        key = "model.layers.0.mlp.up_proj.weight"
        state[key] = original[key].clone()
    server = _server(model, state)
    stip = _stip_logits(model, server, perms, family)
    plain = _plain_logits(model, family)
    return (_valid(family, stip) - _valid(family, plain)).abs().max().item()


@pytest.mark.parametrize(
    ("family", "mistake"),
    [
        ("gpt2", "norms-not-permuted"),  # gamma/beta of LayerNorm left in place
        ("llama", "norms-not-permuted"),  # gamma of RMSNorm left in place
        ("llama", "within-head-rotary"),  # RoPE pairs dimensions inside a head
        ("gpt2", "heads-not-intact"),  # softmax is per head: heads must stay whole
        ("llama", "swiglu-only-down"),  # gate and up must share the hidden order
    ],
)
def test_each_known_mistake_breaks_equivalence(family: str, mistake: str) -> None:
    # The controls show the equivalence test can fail (random norms make it so).
    assert _break(family, mistake) > 1e-2


def test_head_carries_pi_c_so_the_server_never_sees_vocabulary_order() -> None:
    # Prepare
    model = tiny_model("gpt2")
    perms = PermutationSet.generate(model.config, np.random.default_rng(3))
    server = _server(model, permute_state_dict(model.state_dict(), model.config, perms))
    ids = _inputs("gpt2")["input_ids"]

    # Execute: what the server computes
    with torch.no_grad():
        x = permute_features(model.get_input_embeddings()(ids), perms.pi)
        server_view = server(inputs_embeds=x).logits
        plain = model(input_ids=ids).logits

    # Assert: server logits are the real ones in a secret order, not in vocab order
    assert not torch.allclose(server_view, plain, atol=1e-3)
    torch.testing.assert_close(server_view, plain[..., perms.pi_c], atol=1e-4, rtol=0)


def test_a_weight_without_rule_is_refused() -> None:
    model = tiny_model("llama")
    perms = PermutationSet.generate(model.config, np.random.default_rng(0))
    state = {**model.state_dict(), "model.layers.0.extra.weight": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match="matches no STIP rule"):
        permute_state_dict(state, model.config, perms)


def test_permutation_helpers() -> None:
    rng = np.random.default_rng(0)
    p = random_permutation(10, rng)
    x = np.arange(10) * 3
    assert np.array_equal(x[p][inverse(p)], x)
    assert is_permutation(p, 10) and not is_permutation(np.zeros(10), 10)
    with pytest.raises(ValueError, match="not a multiple"):
        AttentionLayout(num_heads=4, num_kv_heads=3, head_dim=8, rotary=True)


def test_gqa_queries_move_with_their_kv_group() -> None:
    # Prepare: 8 query heads over 2 KV heads, head_dim 4
    layout = AttentionLayout(num_heads=8, num_kv_heads=2, head_dim=4, rotary=True)

    # Execute
    att = attention_permutations(layout, np.random.default_rng(5))

    # Assert: new query head i reads an old head of the KV group that new KV head
    # i // 4 holds; rotary: dims inside a head never move
    q_heads, kv_heads = att.q[::4] // 4, att.k[::4] // 4
    assert all(q_heads[i] // 4 == kv_heads[i // 4] for i in range(8))
    assert np.array_equal(att.q.reshape(8, 4) % 4, np.tile(np.arange(4), (8, 1)))


def test_every_family_is_registered() -> None:
    assert set(FAMILIES) == set(FAMILY_NAMES)
    for family in FAMILY_NAMES:
        assert family_of(tiny_model(family).config).name == family
