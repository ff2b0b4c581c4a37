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
from edgecloud.data.testbed.models import SPECS
from edgecloud.data.testbed.readers import load_testbed
from edgecloud.data.testbed.training import (
    SPLITS,
    TrainSettings,
    domain_shift,
    train_all,
)


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
        cmd.add_argument("--epochs", type=int, default=TrainSettings.epochs)
        cmd.add_argument("--every", type=int, default=5, help="use every k-th frame")
        cmd.add_argument("--seed", type=int, default=0)
        cmd.add_argument("--out", type=Path, help="default: <testbed>/models")
        if name == "train-models":
            cmd.add_argument("--models", default=",".join(SPECS))
        else:
            cmd.add_argument("--split", choices=SPLITS, default="cameras")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "generate":
        keys = [
            "num_cameras", "duration_s", "fps", "width", "height", "seed", "codec",
            "bitrate_kbps", "gop", "b_frames", "audio", "shake", "held_out_cameras",
        ]  # fmt: skip
        overrides = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
        try:
            cfg = preset(args.preset, **overrides)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
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
    if args.command == "info":
        testbed = load_testbed(args.testbed)
        manifest = json.loads((args.testbed / "manifest.json").read_text())
        print(json.dumps(manifest["config"], indent=2))
        for cam in manifest["cameras"]:
            print(f"camera {cam['camera_id']} ({cam['split']}): {cam['stats']}")
        return 0
    testbed = load_testbed(args.testbed)
    settings = TrainSettings(epochs=args.epochs, seed=args.seed)
    out = args.out or args.testbed / "models"
    if args.command == "train-models":
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        unknown = sorted(set(names) - set(SPECS))
        if unknown:
            print(
                f"error: --models {unknown} unknown; expected among {sorted(SPECS)}",
                file=sys.stderr,
            )
            return 2
        models = train_all(testbed, out, names, settings, args.every)
        print(
            f"{'model':20} {'held-out acc':>12} {'day':>6} {'night':>6} "
            f"{'params':>8} {'MFLOPs':>7} {'ms':>6}"
        )
        for name, model in models.items():
            m, c = model.metrics, model.cost
            print(
                f"{name:20} {m['accuracy']:12.3f} {m['day_accuracy']:6.3f} "
                f"{m['night_accuracy']:6.3f} {c.parameters:8d} {c.flops / 1e6:7.2f} "
                f"{c.latency_ms:6.2f}"
            )
        print(f"saved under {out}")
        return 0
    result = domain_shift(testbed, settings, args.every, split=args.split)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"domain_shift_{args.split}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:28} {value:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
