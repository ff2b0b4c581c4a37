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
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch
from transformers import AutoConfig, PreTrainedModel

from edgecloud.stip.families import architecture_of, family_of
from edgecloud.stip.permutations import is_permutation
from edgecloud.stip.security import PlaintextTensor
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


class StipBundleError(ValueError):
    """A model directory or bundle that STIP cannot use, and why."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@contextmanager
def _transformers_quiet() -> Iterator[None]:
    # transformers logs its load report (MISSING / UNEXPECTED / MISMATCH tables)
    # as warnings; the checks below turn each into an error message instead.
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def architecture_class(config: Any) -> type[PreTrainedModel]:
    """The ``transformers`` class ``config.architectures`` names (STIP-supported).

    Raises
    ------
    StipBundleError
        If the architecture is missing, not one a STIP family describes, or made
        for another ``model_type`` than the config's.
    """
    try:
        _, name = architecture_of(config)
    except ValueError as err:
        raise StipBundleError(str(err)) from None
    cls: type[PreTrainedModel] = getattr(transformers, name)
    expected = getattr(cls.config_class, "model_type", None)
    if expected != config.model_type:
        raise StipBundleError(
            f"architecture {name!r} is for model_type {expected!r} but the config "
            f"has model_type {config.model_type!r}; expected matching ones"
        )
    return cls


def _listed(items: list[str], limit: int = 6) -> str:
    # one readable line even when a whole layer (or every layer) is off
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"


def _load_problems(info: dict[str, Any]) -> list[str]:
    """Human-readable mismatches from ``from_pretrained``'s loading info."""
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing tensors {_listed(sorted(info['missing_keys']))}")
    if info.get("unexpected_keys"):
        unexpected = sorted(info["unexpected_keys"])
        problems.append(f"unexpected tensors {_listed(unexpected)}")
    mismatched = [
        f"{key} is {tuple(found)} in the checkpoint, {tuple(want)} by config.json"
        for key, found, want in sorted(info.get("mismatched_keys") or ())
    ]
    if mismatched:
        problems.append(f"shape mismatches {_listed(mismatched, 3)}")
    problems.extend(
        f"error {m.strip().splitlines()[0]}"
        for m in info.get("error_msgs") or ()
        if m.strip()
    )
    return problems


def _load_config(path: Path, expected: str) -> Any:
    if not path.exists():
        raise StipBundleError(f"{path} does not exist; {expected}")
    if not path.is_dir():
        raise StipBundleError(f"{path} is not a directory; {expected}")
    if not (path / "config.json").is_file():
        raise StipBundleError(f"{path} has no config.json; {expected}")
    try:
        return AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as err:  # any unreadable config is bad input, not a bug
        raise StipBundleError(
            f"{path / 'config.json'} cannot be read ({_first_line(err)}); {expected}"
        ) from None


def load_checkpoint(path: Path, what: str = "model") -> PreTrainedModel:
    """A ``save_pretrained`` directory, loaded strictly and only from disk.

    The class is the one ``config.architectures`` names (never an auto class of
    another head), and every weight of that class must come from the checkpoint:
    a missing, unexpected or mismatched tensor would otherwise be freshly
    (randomly) initialised and shipped. Never reaches the hub.

    Parameters
    ----------
    path : pathlib.Path
        The directory (``config.json`` + safetensors weights).
    what : str
        What the directory is meant to be, for error messages.

    Raises
    ------
    StipBundleError
        For any unusable directory; the message names ``path`` and what was
        expected.
    """
    path = Path(path)
    expected = f"expected a {what} directory written by save_pretrained"
    with _transformers_quiet():
        config = _load_config(path, expected)
        try:
            family_of(config)
            cls = architecture_class(config)
        except ValueError as err:
            raise StipBundleError(f"{path}: {err}") from None
        try:
            loaded: Any = cls.from_pretrained(
                path,
                config=config,
                local_files_only=True,
                output_loading_info=True,
                # reported (and refused) below rather than raised without detail
                ignore_mismatched_sizes=True,
            )
        except Exception as err:  # corrupt or unreadable weights are bad input
            raise StipBundleError(
                f"{path}: cannot load the {cls.__name__} weights "
                f"({_first_line(err)}); {expected}"
            ) from None
    model, info = loaded  # (model, loading info) with output_loading_info
    problems = _load_problems(info)
    if problems:
        raise StipBundleError(
            f"{path}: the checkpoint does not match its config.json "
            f"({cls.__name__}): {'; '.join(problems)}; expected exactly the "
            "weights of that model"
        )
    result: PreTrainedModel = model
    result.train(False)
    return result


def load_plaintext(path: Path) -> PreTrainedModel:
    """The developer's trained model (see :func:`load_checkpoint`)."""
    return load_checkpoint(path, "trained model")


@dataclass(frozen=True)
class Instance:
    """Paths of one model instance's bundles.

    ``plaintext_identical`` lists the server tensors the developer tool found
    bit-identical to the plaintext weights (empty when none or not checked).
    """

    root: Path
    plaintext_identical: tuple[PlaintextTensor, ...] = ()

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
