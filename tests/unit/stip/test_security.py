"""What STIP protects, measured, and the three attacks that work (threat model)."""

from __future__ import annotations

import numpy as np
import torch

from edgecloud.stip.security import (
    across_samples_distance_correlation,
    distance_correlation,
    identify_tokens,
    per_vector_distance_correlation,
    plaintext_from_permuted,
    recover_permutation,
)
from edgecloud.stip.transform import (
    PermutationSet,
    permute_features,
    permute_state_dict,
)
from tests.stip_models import VOCAB, tiny_model
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
