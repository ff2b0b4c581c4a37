"""Tiny random HF models of every STIP family (random norm weights and biases)."""

from __future__ import annotations

from pathlib import Path

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

VOCAB = 96
LM_FAMILIES = ("gpt2", "llama", "mixtral")
FAMILY_NAMES = (*LM_FAMILIES, "bert", "vit")


def tiny_model(family: str, seed: int = 0, num_labels: int = 3) -> PreTrainedModel:
    """A 2-layer model of ``family`` whose every parameter is random.

    Fresh HF norm layers have gamma=1, beta=0, which hides a transform that
    forgets to permute them; random values do not. ``num_labels`` is BERT's.
    """
    torch.manual_seed(seed)
    common = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4}
    model: PreTrainedModel
    if family == "gpt2":
        model = GPT2LMHeadModel(
            GPT2Config(
                n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=128
            )
        )
    elif family == "llama":  # grouped-query attention: 4 query heads, 2 KV heads
        model = LlamaForCausalLM(
            LlamaConfig(**common, intermediate_size=48, num_key_value_heads=2,
                        vocab_size=VOCAB, max_position_embeddings=128)
        )  # fmt: skip
    elif family == "mixtral":
        model = MixtralForCausalLM(
            MixtralConfig(**common, intermediate_size=48, num_key_value_heads=2,
                          vocab_size=VOCAB, num_local_experts=4, num_experts_per_tok=2,
                          max_position_embeddings=128)
        )  # fmt: skip
    elif family == "bert":
        model = BertForSequenceClassification(
            BertConfig(
                **common, intermediate_size=48, vocab_size=VOCAB, num_labels=num_labels
            )
        )
    elif family == "vit":
        model = ViTForImageClassification(
            ViTConfig(**common, intermediate_size=48, image_size=16, patch_size=4,
                      num_labels=5)
        )  # fmt: skip
    else:
        raise ValueError(f"family {family!r} unknown; expected one of {FAMILY_NAMES}")
    return _randomised(model)


def tiny_qwen2(num_kv_heads: int = 1, seed: int = 0) -> PreTrainedModel:
    """Qwen2 (LLaMA family with q/k/v biases): 4 query heads over ``num_kv_heads``."""
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(
        Qwen2Config(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
                    num_key_value_heads=num_kv_heads, intermediate_size=48,
                    vocab_size=VOCAB, max_position_embeddings=128)
    )  # fmt: skip
    return _randomised(model)


def _randomised(model: PreTrainedModel) -> PreTrainedModel:
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.3)
    return model.eval()


def save_with_tokenizer(family: str, path: Path) -> None:
    """``tiny_model(family)`` saved with a word-level tokenizer (words ``w0..w95``)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    tiny_model(family).save_pretrained(path)
    vocab = {f"w{i}": i for i in range(VOCAB)}
    core = Tokenizer(WordLevel(vocab, unk_token="w0"))
    core.pre_tokenizer = WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="w0").save_pretrained(path)


def plaintext_text(family: str, prompt: str, n: int) -> str:
    """What plaintext greedy ``generate`` continues ``prompt`` with (n words)."""
    ids = torch.tensor([[int(w[1:]) for w in prompt.split()]])
    with torch.no_grad():
        out = tiny_model(family).generate(
            ids, max_new_tokens=n, min_new_tokens=n, do_sample=False
        )
    return " ".join(f"w{t}" for t in out[0, ids.shape[1] :].tolist())
