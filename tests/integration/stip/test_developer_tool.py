"""``python -m edgecloud.stip.developer``: bad checkpoints refused, leaks reported.

Every case runs ``main([...])`` on real ``save_pretrained`` directories of real
``transformers`` classes, edited the way a user's checkpoint goes wrong.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    BertConfig,
    BertForMaskedLM,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
)

from edgecloud.stip.bundles import StipBundleError, load_checkpoint
from edgecloud.stip.developer import main, make_instances
from edgecloud.stip.random_models import KINDS
from edgecloud.stip.runtime import StipServer, StipUser, sample_next
from tests.stip_models import tiny_model, tiny_qwen2

_LLAMA = {
    "num_hidden_layers": 2,
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 48,
    "vocab_size": 96,
}


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("good") / "gpt2"
    tiny_model("gpt2").save_pretrained(path)
    return path


def _edit_config(path: Path, **changes: object) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del config[key]
    (path / "config.json").write_text(json.dumps(config))


def _drop_tensor(path: Path, key: str) -> None:
    tensors = load_file(str(path / "model.safetensors"))
    del tensors[key]
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})


def _truncate(path: Path) -> None:
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


# Each builder turns a copy of a good GPT-2 directory (or a fresh path) into one
# bad input and returns the path the error must name.
Builder = Callable[[Path, Path], Path]


def _model(edit: Callable[[Path], object]) -> Builder:
    def build(good: Path, tmp: Path) -> Path:
        model = tmp / "model"
        shutil.copytree(good, model)
        edit(model)
        return model

    return build


def _saved(make: Callable[[], torch.nn.Module]) -> Builder:
    def build(good: Path, tmp: Path) -> Path:
        make().save_pretrained(tmp / "model")  # type: ignore[operator]
        return tmp / "model"

    return build


def _qwen2_named_llama(good: Path, tmp: Path) -> Path:
    tiny_qwen2(1).save_pretrained(tmp / "model")
    _edit_config(tmp / "model", architectures=["LlamaForCausalLM"])
    return tmp / "model"


def _missing(good: Path, tmp: Path) -> Path:
    return tmp / "no-such-model"


def _file(good: Path, tmp: Path) -> Path:
    (tmp / "model.bin").write_bytes(b"not a directory")
    return tmp / "model.bin"


def _empty(good: Path, tmp: Path) -> Path:
    (tmp / "model").mkdir()
    return tmp / "model"


BAD_MODELS: list[tuple[str, Builder, str]] = [
    # a path that does not exist (used to be read as a hub repo id)
    ("nonexistent", _missing, "does not exist; expected a trained model directory"),
    # a file, not a save_pretrained directory
    ("file", _file, "is not a directory"),
    # a directory without config.json
    ("no-config", _empty, "has no config.json"),
    # config.json that is not JSON
    ("bad-json", _model(lambda p: (p / "config.json").write_text("{")),
     "cannot be read"),
    # truncated safetensors
    ("corrupt-weights", _model(_truncate), "cannot load the GPT2LMHeadModel weights"),
    # feed-forward width edited after save: every c_fc/c_proj mismatches
    ("intermediate-size", _model(lambda p: _edit_config(p, n_inner=64)),
     "shape mismatches transformer.h.0.mlp.c_fc.bias is (128,) in the checkpoint"),
    # hidden width edited after save
    ("hidden-size", _model(lambda p: _edit_config(p, n_embd=48)), "shape mismatches"),
    # one tensor deleted from the checkpoint
    ("missing-tensor", _model(lambda p: _drop_tensor(p, "transformer.h.0.ln_1.weight")),
     "missing tensors transformer.h.0.ln_1.weight;"),
    # num_hidden_layers bumped after save: layer 2 would be random
    ("extra-layer", _model(lambda p: _edit_config(p, n_layer=3)),
     "missing tensors transformer.h.2."),
    # num_hidden_layers lowered after save: layer 1 would be dropped
    ("fewer-layers", _model(lambda p: _edit_config(p, n_layer=1)),
     "unexpected tensors transformer.h.1."),
    # a classification head of a supported base model: not an LM checkpoint
    ("llama-classifier",
     _saved(lambda: LlamaForSequenceClassification(
         LlamaConfig(**_LLAMA, num_labels=3, pad_token_id=0))),
     "architecture 'LlamaForSequenceClassification' is not supported by STIP; "
     "expected one of ['BertForSequenceClassification', 'GPT2LMHeadModel'"),
    # BERT with its masked-LM head: not the sequence classifier STIP describes
    ("bert-masked-lm",
     _saved(lambda: BertForMaskedLM(BertConfig(
         num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
         intermediate_size=48, vocab_size=96))),
     "architecture 'BertForMaskedLM' is not supported by STIP"),
    # the class named does not fit the config's model_type
    ("class-vs-model-type",
     _model(lambda p: _edit_config(p, architectures=["LlamaForCausalLM"])),
     "belongs to the llama family but model_type is 'gpt2'"),
    # a LLaMA class over a Qwen2 checkpoint (same family, other model_type)
    ("class-of-another-model-type",
     _qwen2_named_llama,
     "'LlamaForCausalLM' is for model_type 'llama' but the config has model_type "
     "'qwen2'"),
    # no architectures entry: which head it is cannot be known
    ("no-architectures", _model(lambda p: _edit_config(p, architectures=None)),
     "config 'architectures' is []"),
    # a supported class with a weight no STIP rule covers (LLaMA mlp_bias)
    ("uncovered-weight",
     _saved(lambda: LlamaForCausalLM(LlamaConfig(**_LLAMA, mlp_bias=True))),
     "matches no STIP rule"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "build", "expected"), BAD_MODELS, ids=[c[0] for c in BAD_MODELS]
)
def test_a_bad_model_directory_is_one_error_line_and_leaves_nothing(
    gpt2_dir: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    case: str,
    build: Builder,
    expected: str,
) -> None:
    # Prepare
    model = build(gpt2_dir, tmp_path)
    before = sorted(tmp_path.iterdir())
    capfd.readouterr()

    # Execute
    code = main(["--model", str(model), "--out", str(tmp_path / "bundles")])

    # Assert: exit 2, one line naming the path and what was expected, no bundle
    out, err = capfd.readouterr()
    assert code == 2
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"error: {model}"), line
    assert expected in line, line
    assert "expected" in line
    assert sorted(tmp_path.iterdir()) == before  # no bundles, no staging dir


def _out_not_empty(tmp: Path) -> Path:
    (tmp / "bundles").mkdir()
    (tmp / "bundles" / "instance-0").mkdir()
    return tmp / "bundles"


def _out_file(tmp: Path) -> Path:
    (tmp / "bundles").write_text("x")
    return tmp / "bundles"


def _out_under_file(tmp: Path) -> Path:
    (tmp / "plain-file").write_text("x")
    return tmp / "plain-file" / "bundles"


BAD_OUTS: list[tuple[str, Callable[[Path], Path], list[str], str]] = [
    # an earlier run's bundles: new secrets must not mix with them
    ("out-not-empty", _out_not_empty, [], "already exists and is not empty"),
    # a file where the directory should go
    ("out-is-file", _out_file, [], "is a file; expected a new directory"),
    # cannot be created (its parent is a file)
    ("out-unwritable", _out_under_file, [], "cannot write bundles"),
    # no instance asked for
    ("instances-0", lambda t: t / "bundles", ["--instances", "0"],
     "instances is 0; expected an int >= 1"),
    # numpy seeds are non-negative
    ("seed-negative", lambda t: t / "bundles", ["--seed", "-1"],
     "seed is -1; expected an int >= 0"),
    # not a number (argparse)
    ("instances-abc", lambda t: t / "bundles", ["--instances", "abc"],
     "argument --instances: invalid int value: 'abc'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "make_out", "extra", "expected"), BAD_OUTS, ids=[c[0] for c in BAD_OUTS]
)
def test_a_bad_out_or_instance_count_is_one_error_line(
    gpt2_dir: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    case: str,
    make_out: Callable[[Path], Path],
    extra: list[str],
    expected: str,
) -> None:
    # Prepare
    out = make_out(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    capfd.readouterr()

    # Execute
    code = main(["--model", str(gpt2_dir), "--out", str(out), *extra])

    # Assert
    stdout, err = capfd.readouterr()
    assert code == 2
    assert stdout == ""
    (line,) = err.splitlines()
    assert line.startswith("error: ") and expected in line, line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_the_library_raises_a_typed_error(gpt2_dir: Path, tmp_path: Path) -> None:
    # Prepare
    model = tmp_path / "model"
    shutil.copytree(gpt2_dir, model)
    _edit_config(model, n_layer=3)

    # Execute / Assert: a ValueError subclass naming the checkpoint
    with pytest.raises(StipBundleError, match=r"missing tensors transformer\.h\.2\."):
        make_instances(model, tmp_path / "bundles")
    with pytest.raises(ValueError, match="instances is 0"):
        make_instances(gpt2_dir, tmp_path / "bundles", instances=0)
    assert not (tmp_path / "bundles").exists()


def test_a_server_bundle_that_does_not_match_its_config_is_refused(
    gpt2_dir: Path, tmp_path: Path
) -> None:
    # Prepare: a good instance whose server bundle then loses a tensor
    (instance,) = make_instances(gpt2_dir, tmp_path / "bundles", seed=0)
    _drop_tensor(instance.server, "transformer.h.1.ln_2.bias")

    # Execute / Assert: never served with a freshly initialised weight
    with pytest.raises(
        StipBundleError, match=r"missing tensors transformer\.h\.1\.ln_2"
    ):
        StipServer(instance.server)


def test_good_gpt2_checkpoint_gives_bundles_and_no_warning(
    gpt2_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    out = tmp_path / "bundles"
    capfd.readouterr()

    # Execute
    code = main(["--model", str(gpt2_dir), "--out", str(out), "--instances", "2"])

    # Assert: one line per instance, nothing on stderr, only the bundles written
    stdout, err = capfd.readouterr()
    assert code == 0
    assert err == ""
    assert len(stdout.splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundles"]
    listing = json.loads((out / "instances.json").read_text())
    assert listing["instances"] == ["instance-0", "instance-1"]
    assert listing["plaintext_identical"] == {"instance-0": [], "instance-1": []}
    assert (out / "instance-1" / "server" / "config.json").is_file()


def test_qwen2_with_one_kv_head_warns_once_per_instance(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Prepare: rotary + one KV head: k_proj.bias cannot be permuted
    tiny_qwen2(num_kv_heads=1).save_pretrained(tmp_path / "qwen2")
    out = tmp_path / "bundles"
    capfd.readouterr()

    # Execute
    code = main(
        ["--model", str(tmp_path / "qwen2"), "--out", str(out), "--instances", "2"]
    )

    # Assert: one warning line per instance naming every layer's k_proj.bias
    _, err = capfd.readouterr()
    assert code == 0
    lines = err.splitlines()
    assert [line.split(":")[0:2] for line in lines] == [
        ["warning", " instance-0"],
        ["warning", " instance-1"],
    ]
    for line in lines:
        for i in range(2):
            assert f"model.layers.{i}.self_attn.k_proj.bias" in line
    listing = json.loads((out / "instances.json").read_text())
    for name in ("instance-0", "instance-1"):
        records = {r["key"]: r for r in listing["plaintext_identical"][name]}
        record = records["model.layers.0.self_attn.k_proj.bias"]
        assert record["axes"] == ["k"] and "every instance" in record["reason"]


# --- random-model: a first run without a download -------------------------------


def _stip_generate(server: StipServer, user: StipUser, prompt: list[int]) -> list[int]:
    tokens: list[int] = []
    embeds = user.protect(user.embed(torch.tensor([prompt])))[0]
    for _ in range(12):
        logits = user.reveal(server.step({"me": embeds})["me"])
        tokens.append(sample_next(logits))
        embeds = user.protect(user.embed(torch.tensor([[tokens[-1]]])))[0]
    return tokens


@pytest.mark.parametrize(
    "kind",
    [
        "gpt2",  # tied embeddings, Conv1D, learned positions
        "qwen2",  # LLaMA family with q/k/v biases, GQA, RoPE
        "mixtral",  # experts
    ],
)
def test_random_model_generates_like_plaintext_from_token_ids(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], kind: str
) -> None:
    # Prepare: the two commands a first run uses
    model_dir, out = tmp_path / f"tiny-{kind}", tmp_path / "bundles"
    assert main(["random-model", "--family", kind, "--out", str(model_dir)]) == 0
    assert main(["--model", str(model_dir), "--out", str(out), "--seed", "1"]) == 0
    server = StipServer(out / "instance-0" / "server")
    user = StipUser(out / "instance-0" / "user")
    prompt = [int(t) for t in "3,1,4".split(",")]  # noqa: SIM905 (the CLI's form)

    # Execute
    stip = _stip_generate(server, user, prompt)
    plain = load_checkpoint(model_dir)
    with torch.no_grad():
        expected = plain.generate(  # type: ignore[operator]
            torch.tensor([prompt]), max_new_tokens=12, min_new_tokens=12,
            do_sample=False,
        )[0, 3:].tolist()  # fmt: skip

    # Assert: same tokens (varied ones: a stuck model would compare weakly); no
    # tokenizer needed anywhere
    assert stip == expected
    assert len(set(stip)) >= 4
    assert not any(
        p.name.startswith(("tokenizer", "vocab")) for p in model_dir.iterdir()
    )
    assert "random" in capfd.readouterr().out


@pytest.mark.parametrize("kind", ["bert", "vit"])  # classifiers: build + accept
def test_random_classifiers_are_accepted(tmp_path: Path, kind: str) -> None:
    assert main(["random-model", "--family", kind, "--out", str(tmp_path / "m")]) == 0
    (instance,) = make_instances(tmp_path / "m", tmp_path / "bundles", seed=0)
    assert StipServer(instance.server).family.name == kind


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # not one of the kinds
        (["--family", "gpt5", "--out", "x"], "argument --family: invalid choice"),
        # --out is required
        (["--family", "gpt2"], "the following arguments are required: --out"),
    ],
)
def test_random_model_bad_arguments_are_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    capfd.readouterr()
    assert main(["random-model", *argv]) == 2
    stdout, err = capfd.readouterr()
    (line,) = err.splitlines()
    assert stdout == "" and line.startswith("error: ") and expected in line


def test_random_model_refuses_a_non_empty_out(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine")
    capfd.readouterr()
    assert main(["random-model", "--family", "gpt2", "--out", str(tmp_path / "m")]) == 2
    (line,) = capfd.readouterr().err.splitlines()
    assert f"error: --out {tmp_path / 'm'} exists" in line
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["keep.txt"]
    assert set(KINDS) == {"gpt2", "llama", "qwen2", "mixtral", "bert", "vit"}
