"""P1's tool: ``python -m edgecloud.stip.developer --model DIR --out DIR``.

Loads the trained model with ``from_pretrained`` from a local directory,
generates a secret permutation set per instance and writes, per instance,
``server/`` (for the model server), ``user/`` (for registered data owners) and
``developer/secrets.safetensors`` (kept).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgecloud.stip.bundles import Instance, load_plaintext, write_instance


def make_instances(
    model_dir: Path, out: Path, instances: int = 1, seed: int | None = None
) -> list[Instance]:
    """Write ``instances`` independently permuted copies of the model at ``model_dir``.

    ``seed`` makes the permutations reproducible (tests); by default they come
    from the operating system's CSPRNG.
    """
    if instances < 1:
        raise ValueError(f"instances is {instances}; expected an int >= 1")
    model = load_plaintext(model_dir)
    entropy = seed if seed is not None else secrets.randbits(128)
    rngs = [np.random.default_rng([entropy, k]) for k in range(instances)]
    written = [
        write_instance(model, model_dir, out / f"instance-{k}", rng)
        for k, rng in enumerate(rngs)
    ]
    (out / "instances.json").write_text(
        json.dumps(
            {
                "model": str(model_dir),
                "model_type": model.config.model_type,
                "instances": [str(i.root.name) for i in written],
            },
            indent=2,
        )
        + "\n"
    )
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m edgecloud.stip.developer", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", type=Path, required=True, help="save_pretrained dir")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--seed", type=int, help="reproducible permutations (tests)")
    args = parser.parse_args(argv)
    try:
        written = make_instances(args.model, args.out, args.instances, args.seed)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for instance in written:
        print(
            f"{instance.root}: server bundle {instance.server}, user bundle "
            f"{instance.user}, secrets {instance.secrets} (keep private)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
