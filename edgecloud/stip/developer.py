"""P1's tool: ``python -m edgecloud.stip.developer --model DIR --out DIR``.

Loads the trained model strictly from a local ``save_pretrained`` directory (the
class its config names; every weight from the checkpoint), generates a secret
permutation set per instance and writes, per instance, ``server/`` (for the
model server), ``user/`` (for registered data owners) and
``developer/secrets.safetensors`` (kept), plus ``instances.json``. Server
tensors that the permutations left equal to the plaintext are reported.

``python -m edgecloud.stip.developer random-model --family gpt2 --out DIR``
writes a tiny random model to start with (no download, token-id prompts).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from transformers.utils import logging as _hf_logging

from edgecloud.stip.bundles import (
    Instance,
    StipBundleError,
    load_checkpoint,
    load_plaintext,
    write_instance,
)
from edgecloud.stip.random_models import KINDS, save_random_model
from edgecloud.stip.security import plaintext_identical_tensors

INSTANCES_FILE = "instances.json"
# transformers.utils.logging is untyped
hf_logging: Any = _hf_logging


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise StipBundleError(f"--out {out} is a file; expected a new directory")
    if out.is_dir() and any(out.iterdir()):
        # mixing new secrets with an older run's bundles would be unrecoverable
        raise StipBundleError(
            f"--out {out} already exists and is not empty; expected a new or "
            "empty directory"
        )


def _first_missing(path: Path) -> Path | None:
    """The outermost ancestor of ``path`` (itself included) that does not exist."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _write_all(
    model: Any, model_dir: Path, staging: Path, out: Path, instances: int, seed: int
) -> list[Instance]:
    written = []
    plain = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    for k in range(instances):
        rng = np.random.default_rng([seed, k])
        staged = write_instance(model, model_dir, staging / f"instance-{k}", rng)
        # what the server will hold: the written bundle, loaded as StipServer does
        server = load_checkpoint(staged.server, "STIP server bundle").state_dict()
        found = plaintext_identical_tensors(plain, server, model.config)
        written.append(Instance(out / staged.root.name, tuple(found)))
    (staging / INSTANCES_FILE).write_text(
        json.dumps(
            {
                "model": str(model_dir),
                "model_type": model.config.model_type,
                "instances": [i.root.name for i in written],
                # per instance: server tensors bit-identical to the plaintext
                "plaintext_identical": {
                    i.root.name: [t.to_json() for t in i.plaintext_identical]
                    for i in written
                },
            },
            indent=2,
        )
        + "\n"
    )
    return written


def make_instances(
    model_dir: Path, out: Path, instances: int = 1, seed: int | None = None
) -> list[Instance]:
    """Write ``instances`` independently permuted copies of the model at ``model_dir``.

    ``seed`` makes the permutations reproducible (tests); by default they come
    from the operating system's CSPRNG. Each returned instance (and
    ``out/instances.json``) lists the server tensors that are bit-identical to
    the plaintext (see :func:`edgecloud.stip.security.plaintext_identical_tensors`).
    Everything is written next to ``out`` and moved into place when complete.

    Raises
    ------
    StipBundleError
        If ``model_dir`` is not a supported, complete ``save_pretrained``
        checkpoint, ``instances < 1``, or ``out`` exists and is not an empty
        directory or cannot be written; nothing is left under ``out`` then.
    """
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
        raise StipBundleError(f"instances is {instances!r}; expected an int >= 1")
    if seed is not None and seed < 0:
        raise StipBundleError(f"seed is {seed}; expected an int >= 0")
    model_dir, out = Path(model_dir), Path(out)
    _check_out(out)
    model = load_plaintext(model_dir)
    entropy = seed if seed is not None else secrets.randbits(128)
    created = _first_missing(out.parent)
    staging: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        written = _write_all(model, model_dir, staging, out, instances, entropy)
        if out.is_dir():  # empty (checked above): the rename replaces it
            out.rmdir()
        staging.rename(out)
    except BaseException as err:
        for path in (staging, created):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
        if isinstance(err, OSError):
            raise StipBundleError(
                f"cannot write bundles to {out} ({err}); expected a writable location"
            ) from None
        if isinstance(err, ValueError):  # the transform refused the model
            raise StipBundleError(f"{model_dir}: {err}") from None
        raise
    return written


class _Parser(argparse.ArgumentParser):
    """argparse with one ``error: ...`` line (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _bundle_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m edgecloud.stip.developer",
        description="Permute a trained model into STIP bundles; "
        "'random-model --help' makes a tiny model to start with.",
    )
    parser.add_argument("--model", type=Path, required=True, help="save_pretrained dir")
    parser.add_argument("--out", type=Path, required=True, help="new directory")
    parser.add_argument(
        "--instances", type=int, default=1, help="independently permuted copies"
    )
    parser.add_argument("--seed", type=int, help="reproducible permutations (tests)")
    return parser


def _random_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m edgecloud.stip.developer random-model",
        description="Write a tiny random model (2 layers, width 64, vocabulary "
        "256, no tokenizer: prompts are token ids) for a first STIP run.",
    )
    parser.add_argument(
        "--family", choices=KINDS, required=True, help="qwen2: LLaMA with q/k/v biases"
    )
    parser.add_argument("--out", type=Path, required=True, help="new directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights")
    return parser


def _random_main(argv: Sequence[str]) -> int:
    args = _random_parser().parse_args(argv)
    try:
        path = save_random_model(args.family, args.out, args.seed)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{path}: random {args.family} model (token-id prompts, e.g. '3,1,4')")
    return 0


def _warning(instance: Instance) -> str | None:
    if not instance.plaintext_identical:
        return None
    keys = ", ".join(t.key for t in instance.plaintext_identical)
    return (
        f"warning: {instance.root.name}: {len(instance.plaintext_identical)} "
        f"server tensor(s) equal the plaintext weights: {keys} (reasons in "
        f"{INSTANCES_FILE})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one line per instance, not shard bars
    try:
        if args_list[:1] == ["random-model"]:
            return _random_main(args_list[1:])
        args = _bundle_parser().parse_args(args_list)
        written = make_instances(args.model, args.out, args.instances, args.seed)
    except SystemExit as exit_:  # argparse: --help (0) or a one-line error (2)
        return int(exit_.code or 0)
    except StipBundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    for instance in written:
        print(
            f"{instance.root}: server bundle {instance.server}, user bundle "
            f"{instance.user}, secrets {instance.secrets} (keep private)"
        )
        warning = _warning(instance)
        if warning:
            print(warning, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
