"""Command line: ``python -m edgecloud.data.testbed <command>``.

Commands: ``generate``, ``info``, ``train-models``, ``domain-shift``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edgecloud.data.testbed.config import CODECS, PRESETS, preset
from edgecloud.data.testbed.generate import generate_testbed
from edgecloud.data.testbed.readers import load_testbed
from edgecloud.models import SPECS, SPLITS, BlackBoxTraining, domain_shift, train_all


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edgecloud.data.testbed")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="render, label and encode a testbed")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--preset", choices=sorted(PRESETS), default="default")
    gen.add_argument("--cameras", type=int, dest="num_cameras")
    gen.add_argument("--seconds", type=float, dest="duration_s")
    gen.add_argument("--fps", type=int)
    gen.add_argument("--width", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--codec", choices=sorted(CODECS))
    gen.add_argument("--bitrate-kbps", type=int)
    gen.add_argument("--gop", type=int)
    gen.add_argument("--b-frames", type=int)
    gen.add_argument("--audio", action=argparse.BooleanOptionalAction, default=None)
    gen.add_argument("--shake", action=argparse.BooleanOptionalAction, default=None)
    gen.add_argument("--held-out-cameras", type=int)
    gen.add_argument("--workers", type=int, help="processes (default: one per core)")
    info = sub.add_parser("info", help="summarise a generated testbed")
    info.add_argument("testbed", type=Path)
    for name, helptext in (
        ("train-models", "train and save the black-box models"),
        ("domain-shift", "day-only vs day+night vehicle counter on held-out cameras"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--testbed", type=Path, required=True)
        cmd.add_argument("--epochs", type=int, default=BlackBoxTraining.epochs)
        cmd.add_argument("--every", type=int, default=5, help="use every k-th frame")
        cmd.add_argument("--seed", type=int, default=0)
        cmd.add_argument("--out", type=Path, help="default: <testbed>/models")
        if name == "train-models":
            cmd.add_argument("--models", default=",".join(SPECS))
        else:
            cmd.add_argument("--split", choices=SPLITS, default="cameras")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; returns the process exit code (2: bad input)."""
    args = _parser().parse_args(argv)
    commands = {
        "generate": _generate,
        "info": _info,
        "train-models": _train_models,
        "domain-shift": _domain_shift,
    }
    try:
        return commands[args.command](args)
    except (ValueError, FileNotFoundError) as err:
        # Bad options or a missing / too small testbed: one line, no traceback.
        print(f"error: {err}", file=sys.stderr)
        return 2


def _generate(args: argparse.Namespace) -> int:
    keys = [
        "num_cameras", "duration_s", "fps", "width", "height", "seed", "codec",
        "bitrate_kbps", "gop", "b_frames", "audio", "shake", "held_out_cameras",
    ]  # fmt: skip
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    cfg = preset(args.preset, **overrides)
    start = time.perf_counter()
    testbed, timings = generate_testbed(cfg, args.out, workers=args.workers)
    seconds = time.perf_counter() - start
    frames = sum(t.frames for t in timings)
    print(
        f"{len(testbed.cameras)} cameras x {cfg.num_frames} frames "
        f"({cfg.width}x{cfg.height}, {cfg.fps} fps, {cfg.codec}) "
        f"in {seconds:.1f} s "
        f"= {frames / seconds:.0f} frames/s -> {args.out}"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    load_testbed(args.testbed)  # validates the manifest and the files
    manifest = json.loads((args.testbed / "manifest.json").read_text())
    print(json.dumps(manifest["config"], indent=2))
    for cam in manifest["cameras"]:
        print(f"camera {cam['camera_id']} ({cam['split']}): {cam['stats']}")
    return 0


def _train_models(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SPECS))
    if unknown or not names:
        raise ValueError(
            f"--models {unknown or args.models!r} unknown; expected among "
            f"{sorted(SPECS)}"
        )
    testbed = load_testbed(args.testbed)
    settings = BlackBoxTraining(epochs=args.epochs, seed=args.seed)
    out = args.out or args.testbed / "models"
    models = train_all(testbed, out, names, settings, args.every)
    print(
        f"{'model':20} {'held-out acc':>12} {'day':>6} {'night':>6} "
        f"{'params':>8} {'MFLOPs':>7} {'ms':>6}"
    )
    nan = float("nan")  # a held-out set without night (or day) frames
    for name, model in models.items():
        m, c = model.metrics, model.cost
        print(
            f"{name:20} {m.get('accuracy', nan):12.3f} "
            f"{m.get('day_accuracy', nan):6.3f} {m.get('night_accuracy', nan):6.3f} "
            f"{c.parameters:8d} {c.flops / 1e6:7.2f} {c.latency_ms:6.2f}"
        )
    print(f"saved under {out}")
    return 0


def _domain_shift(args: argparse.Namespace) -> int:
    testbed = load_testbed(args.testbed)
    settings = BlackBoxTraining(epochs=args.epochs, seed=args.seed)
    out = args.out or args.testbed / "models"
    result = domain_shift(testbed, settings, args.every, split=args.split)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"domain_shift_{args.split}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:28} {value:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
