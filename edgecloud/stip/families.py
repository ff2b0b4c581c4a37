"""Per-family descriptions of how each weight touches the residual stream.

A family is data, not code: for every state-dict entry a :class:`Rule` names the
permutation role of each axis. Roles:

``pi``      the residual stream (hidden size): read or written
``pi_c``    the output head (vocabulary or class labels)
``q k v o`` attention projections of layer ``{i}`` (see ``permutations.py``)
``qkv``     GPT-2's fused ``c_attn`` output: ``q``, ``k``, ``v`` side by side
``mlp``     the feed-forward hidden units of layer ``{i}`` (gate and up share it)
``pool``    BERT's pooler hidden units
``expert``  Mixtral: the order of the experts (router rows and expert stacks)
``expert_gate_up`` / ``expert_hidden``  Mixtral: per-expert hidden permutations
            (fused gate+up rows, down-projection columns)

Adding a family means listing its weights here; the transform, the key
generation and the coverage check (every tensor must match a rule, be
client-side, or be declared position-free) are shared.

Weights follow the transformers >= 5 layouts: ``nn.Linear`` is ``(out, in)``;
GPT-2's ``Conv1D`` is ``(in, out)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgecloud.stip.permutations import AttentionLayout

Axes = tuple[str | None, ...]


@dataclass(frozen=True)
class Rule:
    """State-dict key template (``{i}`` = layer index) and the role of each axis."""

    key: str
    axes: Axes

    def pattern(self) -> re.Pattern[str]:
        """A regex matching the concrete keys, capturing the layer index."""
        return re.compile("^" + re.escape(self.key).replace(r"\{i\}", r"(\d+)") + "$")


@dataclass(frozen=True)
class Family:
    """How STIP transforms one model family.

    Parameters
    ----------
    name : str
        ``gpt2``, ``llama``, ``mixtral``, ``bert``, ``vit``.
    model_types : tuple of str
        ``config.model_type`` values this family handles.
    rules : tuple of Rule
        Every server-side weight and its axis roles.
    client_keys : tuple of str
        Weights only the data owner holds (the embedding); the server bundle
        carries zeros in their place.
    rotary : bool
        Rotary position embeddings (q/k dimensions stay inside their head slot).
    output : str
        ``"lm"`` (logits over the vocabulary) or ``"classifier"`` (labels).
    architectures : tuple of str
        The ``transformers`` model classes (``config.architectures``) whose
        weights ``rules`` describe; checkpoints of other heads are refused.
    token_types : str
        Where token-type (segment) ids are embedded: ``"server"`` (a table of
        its own that the server holds, permuted: BERT), ``"client"`` (rows of
        the embedding table the server does not hold: GPT-2) or ``"none"``.
    """

    name: str
    model_types: tuple[str, ...]
    rules: tuple[Rule, ...]
    client_keys: tuple[str, ...]
    rotary: bool
    output: str
    architectures: tuple[str, ...]
    token_types: str = "none"

    def rule_for(self, key: str) -> tuple[Rule, str | None] | None:
        """The rule describing state-dict entry ``key`` and its layer index."""
        for rule in self.rules:
            found = rule.pattern().match(key)
            if found:
                return rule, (found.group(1) if found.groups() else None)
        return None

    def attention_layout(self, config: Any) -> AttentionLayout:
        """The head structure of ``config``."""
        heads = int(config.num_attention_heads)
        kv = int(getattr(config, "num_key_value_heads", None) or heads)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return AttentionLayout(heads, kv, int(head_dim), self.rotary)

    def mlp_hidden(self, config: Any) -> int:
        """Feed-forward hidden units per layer (per expert for MoE)."""
        size = getattr(config, "intermediate_size", None) or getattr(
            config, "n_inner", None
        )
        return int(size or 4 * config.hidden_size)

    def num_experts(self, config: Any) -> int:
        """Experts per MoE layer (0 for dense models)."""
        return int(getattr(config, "num_local_experts", 0) or 0)

    def num_outputs(self, config: Any) -> int:
        """Size of the output head: vocabulary or number of labels."""
        return int(config.vocab_size if self.output == "lm" else config.num_labels)


def _linear(prefix: str, out: str, inp: str, bias: bool = True) -> tuple[Rule, ...]:
    rules = (Rule(f"{prefix}.weight", (out, inp)),)
    return rules + ((Rule(f"{prefix}.bias", (out,)),) if bias else ())


def _norm(prefix: str, bias: bool = True) -> tuple[Rule, ...]:
    return (Rule(f"{prefix}.weight", ("pi",)),) + (
        (Rule(f"{prefix}.bias", ("pi",)),) if bias else ()
    )


def _conv1d(prefix: str, inp: str, out: str) -> tuple[Rule, ...]:
    # GPT-2's Conv1D stores (in, out).
    return (Rule(f"{prefix}.weight", (inp, out)), Rule(f"{prefix}.bias", (out,)))


GPT2 = Family(
    name="gpt2",
    model_types=("gpt2",),
    rules=(
        Rule("transformer.wpe.weight", (None, "pi")),
        *_norm("transformer.h.{i}.ln_1"),
        *_conv1d("transformer.h.{i}.attn.c_attn", "pi", "qkv"),
        *_conv1d("transformer.h.{i}.attn.c_proj", "o", "pi"),
        *_norm("transformer.h.{i}.ln_2"),
        *_conv1d("transformer.h.{i}.mlp.c_fc", "pi", "mlp"),
        *_conv1d("transformer.h.{i}.mlp.c_proj", "mlp", "pi"),
        *_norm("transformer.ln_f"),
        Rule("lm_head.weight", ("pi_c", "pi")),
    ),
    client_keys=("transformer.wte.weight",),
    rotary=False,
    output="lm",
    architectures=("GPT2LMHeadModel",),
    # GPT2Model embeds token types with wte, the table only the data owner holds
    token_types="client",
)


def _llama_like_attention(prefix: str) -> tuple[Rule, ...]:
    # Biases (Qwen-style attention_bias=True) follow their output axis.
    return (
        *_linear(f"{prefix}.q_proj", "q", "pi"),
        *_linear(f"{prefix}.k_proj", "k", "pi"),
        *_linear(f"{prefix}.v_proj", "v", "pi"),
        *_linear(f"{prefix}.o_proj", "pi", "o"),
    )


_LLAMA_NORMS_AND_HEAD = (
    *_norm("model.layers.{i}.input_layernorm", bias=False),
    *_norm("model.layers.{i}.post_attention_layernorm", bias=False),
    *_norm("model.norm", bias=False),
    Rule("lm_head.weight", ("pi_c", "pi")),
)

LLAMA = Family(
    name="llama",
    model_types=("llama", "mistral", "qwen2"),
    rules=(
        *_llama_like_attention("model.layers.{i}.self_attn"),
        *_linear("model.layers.{i}.mlp.gate_proj", "mlp", "pi", bias=False),
        *_linear("model.layers.{i}.mlp.up_proj", "mlp", "pi", bias=False),
        *_linear("model.layers.{i}.mlp.down_proj", "pi", "mlp", bias=False),
        *_LLAMA_NORMS_AND_HEAD,
    ),
    client_keys=("model.embed_tokens.weight",),
    rotary=True,
    output="lm",
    architectures=("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"),
)

MIXTRAL = Family(
    name="mixtral",
    model_types=("mixtral",),
    rules=(
        *_llama_like_attention("model.layers.{i}.self_attn"),
        Rule("model.layers.{i}.mlp.gate.weight", ("expert", "pi")),
        # (experts, 2 * hidden, size): gate rows then up rows, one permutation each
        Rule(
            "model.layers.{i}.mlp.experts.gate_up_proj",
            ("expert", "expert_gate_up", "pi"),
        ),
        # (experts, size, hidden)
        Rule(
            "model.layers.{i}.mlp.experts.down_proj", ("expert", "pi", "expert_hidden")
        ),
        *_LLAMA_NORMS_AND_HEAD,
    ),
    client_keys=("model.embed_tokens.weight",),
    rotary=True,
    output="lm",
    architectures=("MixtralForCausalLM",),
)

BERT = Family(
    name="bert",
    model_types=("bert",),
    rules=(
        Rule("bert.embeddings.position_embeddings.weight", (None, "pi")),
        Rule("bert.embeddings.token_type_embeddings.weight", (None, "pi")),
        *_norm("bert.embeddings.LayerNorm"),
        *_linear("bert.encoder.layer.{i}.attention.self.query", "q", "pi"),
        *_linear("bert.encoder.layer.{i}.attention.self.key", "k", "pi"),
        *_linear("bert.encoder.layer.{i}.attention.self.value", "v", "pi"),
        *_linear("bert.encoder.layer.{i}.attention.output.dense", "pi", "o"),
        *_norm("bert.encoder.layer.{i}.attention.output.LayerNorm"),
        *_linear("bert.encoder.layer.{i}.intermediate.dense", "mlp", "pi"),
        *_linear("bert.encoder.layer.{i}.output.dense", "pi", "mlp"),
        *_norm("bert.encoder.layer.{i}.output.LayerNorm"),
        # tanh is elementwise: the pooler's units get a secret order of their own
        *_linear("bert.pooler.dense", "pool", "pi"),
        *_linear("classifier", "pi_c", "pool"),
    ),
    client_keys=("bert.embeddings.word_embeddings.weight",),
    rotary=False,
    output="classifier",
    architectures=("BertForSequenceClassification",),
    token_types="server",
)

VIT = Family(
    name="vit",
    model_types=("vit",),
    rules=(
        *_linear("vit.layers.{i}.attention.q_proj", "q", "pi"),
        *_linear("vit.layers.{i}.attention.k_proj", "k", "pi"),
        *_linear("vit.layers.{i}.attention.v_proj", "v", "pi"),
        *_linear("vit.layers.{i}.attention.o_proj", "pi", "o"),
        *_norm("vit.layers.{i}.layernorm_before"),
        *_norm("vit.layers.{i}.layernorm_after"),
        *_linear("vit.layers.{i}.mlp.fc1", "mlp", "pi"),
        *_linear("vit.layers.{i}.mlp.fc2", "pi", "mlp"),
        *_norm("vit.layernorm"),
        *_linear("classifier", "pi_c", "pi"),
    ),
    # The data owner runs the whole patch embedding (conv, [CLS], positions).
    client_keys=(
        "vit.embeddings.cls_token",
        "vit.embeddings.position_embeddings",
        "vit.embeddings.patch_embeddings.projection.weight",
        "vit.embeddings.patch_embeddings.projection.bias",
    ),
    rotary=False,
    output="classifier",
    architectures=("ViTForImageClassification",),
)

FAMILIES: dict[str, Family] = {f.name: f for f in (GPT2, LLAMA, MIXTRAL, BERT, VIT)}


def family_of(config: Any) -> Family:
    """The family handling ``config.model_type``."""
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    supported = sorted(t for f in FAMILIES.values() for t in f.model_types)
    raise ValueError(
        f"model_type {model_type!r} has no STIP family; expected one of {supported}"
    )


def supported_architectures() -> list[str]:
    """Every model class name some family describes, sorted."""
    return sorted(a for f in FAMILIES.values() for a in f.architectures)


def architecture_of(config: Any) -> tuple[Family, str]:
    """The family and the model class name ``config.architectures`` names.

    Raises
    ------
    ValueError
        If ``config.architectures`` does not name exactly one class, or names one
        no family describes (another head of a supported model included: its
        weights would be loaded into a class they do not fit).
    """
    names = list(getattr(config, "architectures", None) or [])
    supported = supported_architectures()
    if len(names) != 1:
        raise ValueError(
            f"config 'architectures' is {names}; expected exactly one of {supported}"
        )
    (name,) = names
    family = next((f for f in FAMILIES.values() if name in f.architectures), None)
    if family is None:
        raise ValueError(
            f"architecture {name!r} is not supported by STIP; expected one of "
            f"{supported}"
        )
    if getattr(config, "model_type", None) not in family.model_types:
        raise ValueError(
            f"architecture {name!r} belongs to the {family.name} family but "
            f"model_type is {getattr(config, 'model_type', None)!r}; expected one "
            f"of {list(family.model_types)}"
        )
    return family, name
