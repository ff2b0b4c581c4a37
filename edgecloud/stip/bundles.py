"""The model developer's outputs: a server bundle and a user bundle per instance.

``server/``  ``save_pretrained`` of the permuted model (safetensors + config):
             no permutation, and zeros where the embedding table was.
``user/``    ``stip_user.safetensors`` (``pi``, ``pi_c``, the embedding weights),
             the model config and any tokenizer files.
``developer/secrets.safetensors``  every permutation: stays with the developer
             (rotating or auditing an instance needs it; the server never does).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    PreTrainedModel,
)

from edgecloud.stip.families import Family, family_of
from edgecloud.stip.permutations import is_permutation
from edgecloud.stip.transform import PermutationSet, permute_state_dict

USER_FILE = "stip_user.safetensors"
USER_META = "stip_user.json"
SECRETS_FILE = "secrets.safetensors"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "preprocessor_config.json",
)


def model_class(family: Family) -> Any:
    """The HF auto class that loads models of ``family``."""
    if family.output == "lm":
        return AutoModelForCausalLM
    if family.name == "vit":
        return AutoModelForImageClassification
    return AutoModelForSequenceClassification


def load_plaintext(path: Path) -> PreTrainedModel:
    """The developer's trained model, ``from_pretrained`` from a local directory."""
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    family = family_of(config)
    model: PreTrainedModel = model_class(family).from_pretrained(
        path, local_files_only=True
    )
    model.train(False)
    return model


@dataclass(frozen=True)
class Instance:
    """Paths of one model instance's bundles."""

    root: Path

    @property
    def server(self) -> Path:
        """The server bundle (what the model server receives)."""
        return self.root / "server"

    @property
    def user(self) -> Path:
        """The user bundle (what registered data owners receive)."""
        return self.root / "user"

    @property
    def secrets(self) -> Path:
        """The developer's full permutation set."""
        return self.root / "developer" / SECRETS_FILE


def write_instance(
    model: PreTrainedModel,
    source: Path,
    out: Path,
    rng: np.random.Generator,
) -> Instance:
    """Permute ``model`` with fresh secrets; write its three bundles under ``out``."""
    config = model.config
    family = family_of(config)
    perms = PermutationSet.generate(config, rng)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    instance = Instance(out)

    # Server: a model of the same class with untied head (the head carries pi_c,
    # the embedding table is gone) and the permuted weights.
    server_config = config.__class__.from_dict(config.to_dict())
    server_config.tie_word_embeddings = False
    server = model.__class__(server_config)
    server.load_state_dict(permute_state_dict(state, config, perms), strict=True)
    server.save_pretrained(instance.server)

    # User: pi, pi_c and the embedding weights (plain: the user embeds locally).
    instance.user.mkdir(parents=True, exist_ok=True)
    tensors = {f"embedding.{k}": state[k].contiguous() for k in family.client_keys}
    tensors.update({k: torch.from_numpy(v) for k, v in perms.user_part().items()})
    save_torch(tensors, str(instance.user / USER_FILE))
    config.save_pretrained(instance.user)
    (instance.user / USER_META).write_text(
        json.dumps({"family": family.name, "client_keys": list(family.client_keys)})
        + "\n"
    )
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, instance.user / name)

    instance.secrets.parent.mkdir(parents=True, exist_ok=True)
    save_numpy(
        {k: np.ascontiguousarray(v) for k, v in perms.perms.items()},
        str(instance.secrets),
    )
    return instance


def load_secrets(path: Path) -> PermutationSet:
    """The developer's permutation set of an instance."""
    return PermutationSet(dict(load_numpy(str(path))))


def load_user_tensors(directory: Path) -> tuple[dict[str, torch.Tensor], Any]:
    """The user bundle's tensors (validated) and the model config."""
    path = directory / USER_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no STIP user bundle at {path}; create one with "
            "'python -m edgecloud.stip.developer --model <dir> --out <dir>'"
        )
    tensors = load_torch(str(path))
    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    family = family_of(config)
    expected = {
        "pi": int(config.hidden_size),
        "pi_c": family.num_outputs(config),
    }
    for key, size in expected.items():
        if key not in tensors or not is_permutation(tensors[key].numpy(), size):
            raise ValueError(
                f"{path}: {key!r} is missing or not a permutation of {size} items"
            )
    return tensors, config
