"""Developer tool -> server bundle + user bundle, through real HF classes on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edgecloud.stip.bundles import load_secrets
from edgecloud.stip.developer import main, make_instances
from edgecloud.stip.runtime import StipServer, StipUser, sample_next
from tests.stip_models import FAMILY_NAMES, LM_FAMILIES, VOCAB, tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for family in FAMILY_NAMES:
        tiny_model(family).save_pretrained(root / family)
        paths[family] = root / family
    return paths


def _generate(
    server: StipServer, user: StipUser, prompt: torch.Tensor, n: int
) -> list[int]:
    tokens: list[int] = []
    embeds = user.protect(user.embed(prompt[None]))[0]
    for _ in range(n):
        logits = user.reveal(server.step({"client": embeds})["client"])
        tokens.append(sample_next(logits))
        embeds = user.protect(user.embed(torch.tensor([[tokens[-1]]])))[0]
    return tokens


@pytest.mark.parametrize("family", LM_FAMILIES)
def test_greedy_generation_with_kv_cache_equals_plaintext_generate(
    saved: dict[str, Path], tmp_path: Path, family: str
) -> None:
    # Prepare
    (instance,) = make_instances(saved[family], tmp_path, seed=11)
    server, user = StipServer(instance.server), StipUser(instance.user)
    plain = tiny_model(family)
    prompt = torch.randint(0, VOCAB, (6,), generator=torch.Generator().manual_seed(2))

    # Execute
    stip_tokens = _generate(server, user, prompt, 32)
    with torch.no_grad():
        expected = plain.generate(
            prompt[None], max_new_tokens=32, min_new_tokens=32, do_sample=False
        )[0, 6:].tolist()

    # Assert
    assert stip_tokens == expected


def test_sessions_at_the_same_position_are_batched_and_stay_separate(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    # Prepare: three clients, two with equal prompt lengths
    (instance,) = make_instances(saved["llama"], tmp_path, seed=1)
    server, user = StipServer(instance.server), StipUser(instance.user)
    gen = torch.Generator().manual_seed(4)
    prompts = {"a": torch.randint(0, VOCAB, (5,), generator=gen),
               "b": torch.randint(0, VOCAB, (5,), generator=gen),
               "c": torch.randint(0, VOCAB, (3,), generator=gen)}  # fmt: skip
    alone = {
        k: _generate(StipServer(instance.server), user, p, 8)
        for k, p in prompts.items()
    }

    # Execute: all three step together
    embeds = {k: user.protect(user.embed(p[None]))[0] for k, p in prompts.items()}
    together: dict[str, list[int]] = {k: [] for k in prompts}
    for _ in range(8):
        out = server.step(embeds)
        for k, logits in out.items():
            together[k].append(sample_next(user.reveal(logits)))
        embeds = {
            k: user.protect(user.embed(torch.tensor([[t[-1]]])))[0]
            for k, t in together.items()
        }

    # Assert
    assert together == alone
    assert set(server.sessions) == {"a", "b", "c"}
    server.end("a")
    assert set(server.sessions) == {"b", "c"}


@pytest.mark.parametrize("family", ["bert", "vit"])
def test_classification_through_the_bundles(
    saved: dict[str, Path], tmp_path: Path, family: str
) -> None:
    (instance,) = make_instances(saved[family], tmp_path, seed=5)
    server, user = StipServer(instance.server), StipUser(instance.user)
    plain = tiny_model(family)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if family == "bert":
            ids = torch.randint(0, VOCAB, (2, 7), generator=gen)
            mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
            expected = plain(input_ids=ids, attention_mask=mask).logits
            got = user.reveal(server.forward(user.protect(user.embed(ids)), mask))
        else:
            pixels = torch.randn(2, 3, 16, 16, generator=gen)
            expected = plain(pixel_values=pixels).logits
            got = user.reveal(server.forward(user.protect(user.embed(pixels))))
    assert (got - expected).abs().max().item() <= 1e-4


def test_bert_token_type_ids_are_embedded_by_the_server_like_plaintext(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    # Prepare: BERT's token-type table stays on the server, permuted with pi
    (instance,) = make_instances(saved["bert"], tmp_path, seed=5)
    server, user = StipServer(instance.server), StipUser(instance.user)
    plain = tiny_model("bert")
    ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))
    types = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]])
    mask = torch.ones(2, 7, dtype=torch.long)

    # Execute
    with torch.no_grad():
        expected = plain(input_ids=ids, attention_mask=mask, token_type_ids=types)
        sent = user.protect(user.embed(ids))
        got = user.reveal(server.forward(sent, mask, token_type_ids=types))
        without = user.reveal(server.forward(sent, mask))

    # Assert: equal to plaintext with segments; the segments do change the output
    assert (got - expected.logits).abs().max().item() <= 1e-4
    assert (without - expected.logits).abs().max().item() > 1e-3


def test_gpt2_token_types_are_added_on_the_device_and_refused_by_the_server(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    # Prepare: GPT-2 embeds token types with wte, whose rows the server lacks
    (instance,) = make_instances(saved["gpt2"], tmp_path, seed=6)
    server, user = StipServer(instance.server), StipUser(instance.user)
    plain = tiny_model("gpt2")
    ids = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    types = torch.tensor([[0, 0, 0, 5, 5, 5], [0, 7, 7, 7, 7, 7]])

    # Execute / Assert: the server refuses them instead of adding zeros
    with pytest.raises(ValueError, match=r"StipUser\.embed\(ids, token_type_ids"):
        server.forward(user.protect(user.embed(ids)), token_type_ids=types)

    # Execute: the data owner adds them before permuting
    with torch.no_grad():
        got = user.reveal(server.forward(user.protect(user.embed(ids, types))))
        expected = plain(input_ids=ids, token_type_ids=types).logits
        untyped = plain(input_ids=ids).logits

    # Assert
    assert (got - expected).abs().max().item() <= 1e-4
    assert (untyped - expected).abs().max().item() > 1e-3  # types matter here
    with pytest.raises(ValueError, match="expected the shape of the token ids"):
        user.embed(ids, types[:, :3])


def test_families_without_token_types_refuse_them(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    (instance,) = make_instances(saved["llama"], tmp_path, seed=1)
    server, user = StipServer(instance.server), StipUser(instance.user)
    ids = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="no token-type embedding"):
        server.forward(user.protect(user.embed(ids)), token_type_ids=ids)
    with pytest.raises(ValueError, match="no token-type embedding"):
        user.embed(ids, token_type_ids=ids)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_server_bundle_holds_no_permutation_and_no_plaintext_weight(
    saved: dict[str, Path], tmp_path: Path, family: str
) -> None:
    # Prepare
    (instance,) = make_instances(saved[family], tmp_path, seed=3)
    plain = {k: v for k, v in tiny_model(family).state_dict().items()}
    secrets = load_secrets(instance.secrets)

    # Execute
    server_files = sorted(instance.server.iterdir())
    held = {}
    for path in server_files:
        if path.suffix == ".safetensors":
            held.update(load_file(str(path)))

    # Assert: only config + weights; nothing equals a plaintext weight or a secret
    assert {p.name for p in server_files} <= {
        "config.json",
        "model.safetensors",
        "generation_config.json",
    }
    for key, tensor in held.items():
        if tensor.numel() > 1 and key in plain and tensor.shape == plain[key].shape:
            assert not torch.equal(tensor, plain[key]), key
        for name, perm in secrets.perms.items():
            assert not (
                tensor.numel() == perm.size
                and np.array_equal(tensor.numpy().ravel(), perm.ravel())
            ), name
    # The user bundle has pi and pi_c, never the hidden permutations
    user_tensors = load_file(str(instance.user / "stip_user.safetensors"))
    assert {k for k in user_tensors if not k.startswith("embedding.")} == {"pi", "pi_c"}


def test_instances_get_different_permutations_and_cli_reports_errors(
    saved: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = make_instances(saved["gpt2"], tmp_path / "two", instances=2, seed=9)
    a, b = load_secrets(first.secrets), load_secrets(second.secrets)
    assert not np.array_equal(a.pi, b.pi)
    assert main(["--model", str(saved["gpt2"]), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "instance-0" / "server" / "config.json").is_file()
    assert (
        main(["--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    )
    assert "error:" in capsys.readouterr().err


def test_user_bundle_is_validated(saved: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no STIP user bundle"):
        StipUser(tmp_path)
