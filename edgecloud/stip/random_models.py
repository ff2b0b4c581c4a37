"""Tiny random models of every STIP family, for a first run without a download.

``python -m edgecloud.stip.developer random-model --family gpt2 --out tiny-gpt2``
writes one with ``save_pretrained`` (no tokenizer: prompts are token ids such as
``"3,1,4"``); the developer tool then accepts it like any trained model.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
    ViTConfig,
    ViTForImageClassification,
)

VOCAB = 256
# Model kinds: the family names plus qwen2 (LLaMA family with attention biases)
KINDS = ("gpt2", "llama", "qwen2", "mixtral", "bert", "vit")

# Shared by every kind: 2 layers, width 64, 4 query heads (2 KV heads with GQA)
_WIDTH: dict[str, Any] = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
}
# No special tokens: ids are the whole interface, and generation never stops early
_NO_SPECIAL: dict[str, Any] = {
    "bos_token_id": None,
    "eos_token_id": None,
    "pad_token_id": None,
}
_DECODER: dict[str, Any] = {
    **_WIDTH,
    **_NO_SPECIAL,
    "intermediate_size": 128,
    "num_key_value_heads": 2,
    "vocab_size": VOCAB,
    "max_position_embeddings": 256,
}


def _labels(n: int) -> dict[str, Any]:
    # num_labels is a PreTrainedConfig keyword the typed config signatures omit
    return {"num_labels": n}


def _untrained(kind: str) -> PreTrainedModel:
    if kind == "gpt2":
        return GPT2LMHeadModel(
            GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB,
                       n_positions=256, **_NO_SPECIAL)
        )  # fmt: skip
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**_DECODER))
    if kind == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**_DECODER))
    if kind == "mixtral":
        return MixtralForCausalLM(
            MixtralConfig(**_DECODER, num_local_experts=4, num_experts_per_tok=2)
        )
    if kind == "bert":
        return BertForSequenceClassification(
            BertConfig(**_WIDTH, **_labels(3), intermediate_size=128,
                       vocab_size=VOCAB)
        )  # fmt: skip
    if kind == "vit":
        return ViTForImageClassification(
            ViTConfig(**_WIDTH, **_labels(5), intermediate_size=128, image_size=32,
                      patch_size=8)
        )  # fmt: skip
    raise ValueError(f"model kind {kind!r} unknown; expected one of {list(KINDS)}")


def random_model(kind: str, seed: int = 0) -> PreTrainedModel:
    """A 2-layer model of ``kind`` (see :data:`KINDS`) with every parameter random.

    Weights and biases are ``N(0, 0.3^2)``; norm gains ``1 + N(0, 0.3^2)``. A fresh
    HF init sets norms to constants, which no permutation can hide (the developer
    tool would report every one of them as plaintext).

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`KINDS`.
    """
    model = _untrained(kind)
    gen = torch.Generator().manual_seed(seed)
    # gains around 1 keep the residual stream alive (varied greedy tokens)
    gains = {
        id(module.weight)
        for module in model.modules()
        if "norm" in type(module).__name__.lower()
        and isinstance(getattr(module, "weight", None), torch.Tensor)
    }
    with torch.no_grad():
        for param in model.parameters():
            noise = torch.randn(param.shape, generator=gen) * 0.3
            param.copy_(noise + 1.0 if id(param) in gains else noise)
    model.train(False)
    return model


def save_random_model(kind: str, out: Path, seed: int = 0) -> Path:
    """Write :func:`random_model` to ``out`` with ``save_pretrained``.

    Written next to ``out`` and moved into place when complete.

    Raises
    ------
    ValueError
        If ``kind`` is unknown or ``out`` exists and is not an empty directory.
    OSError
        If ``out`` cannot be written (nothing is left behind).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists; expected a new or empty directory")
    model = random_model(kind, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(staging)
        if out.is_dir():  # empty (checked above): the rename replaces it
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
