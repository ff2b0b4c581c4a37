"""What STIP protects, measured, the three attacks that work (threat model), and
which server tensors the permutations leave equal to the plaintext."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import PreTrainedModel

from edgecloud.stip.families import family_of
from edgecloud.stip.security import (
    across_samples_distance_correlation,
    distance_correlation,
    identify_tokens,
    identity_probability,
    per_vector_distance_correlation,
    plaintext_from_permuted,
    plaintext_identical_tensors,
    recover_permutation,
)
from edgecloud.stip.transform import (
    PermutationSet,
    permute_features,
    permute_state_dict,
)
from tests.stip_models import VOCAB, tiny_model, tiny_qwen2
from tests.unit.stip.test_transform import _server


def _setup():  # type: ignore[no-untyped-def]
    model = tiny_model("gpt2")
    perms = PermutationSet.generate(model.config, np.random.default_rng(21))
    server = _server(model, permute_state_dict(model.state_dict(), model.config, perms))
    return model, perms, server


def test_distance_correlation_basics() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    assert distance_correlation(x, 2 * x + 1) > 0.999
    # the V-statistic is biased upwards (~0.2 for independent n=200)
    assert distance_correlation(x, rng.normal(size=(200, 3))) < 0.3


def test_permuted_activations_look_unrelated_per_vector_but_keep_all_geometry() -> None:
    # Prepare
    model, perms, _ = _setup()
    ids = torch.arange(0, 40).reshape(4, 10)
    with torch.no_grad():
        x = model.get_input_embeddings()(ids)
    permuted = permute_features(x, perms.pi)

    # Assert: the thesis' per-vector view is low ...
    assert per_vector_distance_correlation(x, permuted) < 0.5
    # ... but with vectors as samples it is exactly 1: distances are preserved
    assert abs(across_samples_distance_correlation(x, permuted) - 1.0) < 1e-9
    assert not torch.equal(x, permuted)


def test_server_output_without_pi_c_is_meaningless() -> None:
    model, perms, server = _setup()
    ids = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        seen = server(
            inputs_embeds=permute_features(model.get_input_embeddings()(ids), perms.pi)
        ).logits
    agree = (seen.argmax(-1) == plain.argmax(-1)).float().mean().item()
    assert agree < 0.2  # the server's argmax is the wrong token (chance ~ 1/96)


def test_attack_a_known_plaintext_recovers_pi_by_column_matching() -> None:
    _, perms, _ = _setup()
    x = torch.randn(4, 32)  # four known embeddings are enough
    recovered = recover_permutation(x, permute_features(x, perms.pi))
    assert np.array_equal(recovered, perms.pi)


def test_attack_b_pi_and_pi_c_make_the_server_model_fully_usable() -> None:
    # Prepare: the server learns pi (attack a) and pi_c from one known output
    model, perms, server = _setup()
    known = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        emb = model.get_input_embeddings()(known)
        pi = recover_permutation(emb[0], permute_features(emb, perms.pi)[0])
        pi_c = recover_permutation(
            model(input_ids=known).logits[0],
            server(inputs_embeds=permute_features(emb, pi)).logits[0],
        )

    # Execute: on inputs it has never seen, without any hidden permutation
    fresh = torch.randint(0, VOCAB, (3, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        x = permute_features(model.get_input_embeddings()(fresh), pi)
        stolen = plaintext_from_permuted(server(inputs_embeds=x).logits, pi_c)
        plain = model(input_ids=fresh).logits

    # Assert: the hidden permutations are symmetries; the model is fully usable
    assert np.array_equal(pi, perms.pi) and np.array_equal(pi_c, perms.pi_c)
    assert (stolen - plain).abs().max().item() < 1e-4


def test_attack_c_known_embedding_table_identifies_every_token() -> None:
    model, perms, _ = _setup()
    ids = torch.randint(0, VOCAB, (50,), generator=torch.Generator().manual_seed(3))
    table = model.get_input_embeddings().weight.detach()
    with torch.no_grad():
        sent = permute_features(model.get_input_embeddings()(ids), perms.pi)
    assert np.array_equal(identify_tokens(sent, table), ids.numpy())


# --- which server tensors stay bit-identical to the plaintext ------------------


def _distinct_values(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # every entry different: a permuted copy equals it iff every order on its axes
    # is the identity (ground truth from the secrets, independent of the weights)
    return {
        k: torch.arange(v.numel(), dtype=torch.float64).reshape(v.shape)
        for k, v in state.items()
    }


def _identity_keys(model: PreTrainedModel, perms: PermutationSet) -> set[str]:
    distinct = _distinct_values(model.state_dict())
    moved = permute_state_dict(distinct, model.config, perms)
    client = set(family_of(model.config).client_keys)
    return {
        k for k, v in moved.items() if k not in client and torch.equal(v, distinct[k])
    }


def _exposed(
    model: PreTrainedModel, seed: int
) -> tuple[set[str], set[str], PermutationSet]:
    """(keys the detector reports, keys whose orders are all identity, secrets)."""
    perms = PermutationSet.generate(model.config, np.random.default_rng(seed))
    plain = model.state_dict()
    server = permute_state_dict(plain, model.config, perms)
    found = plaintext_identical_tensors(plain, server, model.config)
    return {t.key for t in found}, _identity_keys(model, perms), perms


K_BIASES = {f"model.layers.{i}.self_attn.k_proj.bias" for i in range(2)}


def test_qwen2_one_kv_head_ships_k_proj_bias_plaintext_in_every_instance() -> None:
    # Prepare: rotary keeps q/k dims in place; one KV head has a single head order
    model = tiny_qwen2(num_kv_heads=1)

    for seed in range(10):
        # Execute
        found, identity, _ = _exposed(model, seed)

        # Assert: k_proj.bias of every layer, and exactly what the secrets predict
        assert found >= K_BIASES, seed
        assert found == identity, seed
    assert identity_probability(("k",), model.config) == 1.0
    perms = PermutationSet.generate(model.config, np.random.default_rng(0))
    server = permute_state_dict(model.state_dict(), model.config, perms)
    (k_bias,) = [
        t
        for t in plaintext_identical_tensors(model.state_dict(), server, model.config)
        if t.key == "model.layers.0.self_attn.k_proj.bias"
    ]
    assert k_bias.axes == ("k",)
    assert "every instance" in k_bias.reason and "rotary" in k_bias.reason


def test_qwen2_two_kv_heads_ship_k_proj_bias_iff_the_head_order_is_identity() -> None:
    # Prepare: two KV heads: the k order is the identity with probability 1/2
    model = tiny_qwen2(num_kv_heads=2)
    exposed_layers = 0

    for seed in range(50):
        # Execute
        found, identity, perms = _exposed(model, seed)

        # Assert: certain, per instance: found == all-identity keys; k_proj.bias of
        # layer i is among them iff that layer's KV-head order is the identity
        assert found == identity, seed
        for i in range(2):
            k_identity = np.array_equal(perms.perms[f"layers.{i}.k"], np.arange(16))
            assert (f"model.layers.{i}.self_attn.k_proj.bias" in found) == k_identity
            exposed_layers += k_identity

    # Assert: both outcomes occur over these 50 fixed seeds (48 of 100 layers)
    assert 0 < exposed_layers < 100
    assert identity_probability(("k",), model.config) == 0.5


def test_two_label_classifier_bias_is_caught_when_pi_c_is_the_identity() -> None:
    # Prepare: 2 labels: pi_c is the identity with probability 1/2
    model = tiny_model("bert", num_labels=2)
    outcomes = set()

    for seed in range(20):
        # Execute
        found, identity, perms = _exposed(model, seed)

        # Assert
        pi_c_identity = np.array_equal(perms.pi_c, np.arange(2))
        assert ("classifier.bias" in found) == pi_c_identity, seed
        assert found == identity, seed
        outcomes.add(pi_c_identity)
    assert outcomes == {True, False}  # the detector was exercised both ways
    assert identity_probability(("pi_c",), model.config) == 0.5


def test_gpt2_ships_no_plaintext_tensor_unless_one_is_constant() -> None:
    # Prepare: every GPT-2 tensor has a pi (32!) or a head/dim order on an axis
    model = tiny_model("gpt2")

    for seed in range(10):
        # Execute / Assert
        found, identity, _ = _exposed(model, seed)
        assert found == identity == set(), seed

    # Prepare: a constant tensor (fresh LayerNorm beta = 0) is hidden by no order
    with torch.no_grad():
        model.transformer.h[0].ln_1.bias.zero_()

    # Execute
    found, _, _ = _exposed(model, 0)
    perms = PermutationSet.generate(model.config, np.random.default_rng(0))
    server = permute_state_dict(model.state_dict(), model.config, perms)
    (record,) = plaintext_identical_tensors(model.state_dict(), server, model.config)

    # Assert
    assert found == {"transformer.h.0.ln_1.bias"}
    assert "constant" in record.reason and record.axes == ("pi",)


def test_a_tied_head_is_compared_with_the_embedding_table() -> None:
    # Prepare: a checkpoint stores GPT-2's tied table once (no lm_head.weight)
    model = tiny_model("gpt2")
    plain = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    perms = PermutationSet.generate(model.config, np.random.default_rng(0))
    server = permute_state_dict(model.state_dict(), model.config, perms)

    # Execute: an honest bundle, then one whose head is the plaintext table
    honest = plaintext_identical_tensors(plain, server, model.config)
    leaky = {**server, "lm_head.weight": plain["transformer.wte.weight"].clone()}
    found = plaintext_identical_tensors(plain, leaky, model.config)

    # Assert
    assert honest == []
    assert [t.key for t in found] == ["lm_head.weight"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # a server tensor the plaintext does not have: not the same model
        ("extra-key", "no plaintext counterpart"),
        # a server tensor of another shape: not the same model
        ("other-shape", "expected equal shapes"),
    ],
)
def test_comparing_with_another_model_is_refused(change: str, message: str) -> None:
    model = tiny_model("gpt2")
    server = dict(model.state_dict())
    if change == "extra-key":
        server["transformer.h.5.ln_1.bias"] = torch.zeros(32)
    else:
        server["transformer.ln_f.bias"] = torch.zeros(16)
    with pytest.raises(ValueError, match=message):
        plaintext_identical_tensors(model.state_dict(), server, model.config)
