"""PacketGame on the testbed, measured in one run.

Prints and writes ``benchmarks/results/packetgame.json`` (and CSV / PNG where
there are curves):

* **parse cost**: seconds per packet to read the picture type and reference flag
  from the bitstream, per codec (H.264, H.265, VP9), next to a single-threaded
  decode of the same packets;
* **decode cost model**: calibrated milliseconds per I / P / B picture;
* **decision cost at scale**: 1000 concurrent streams replayed from the testbed's
  cameras with time offsets (real metadata, no decoding): seconds per stream per
  round of the whole decision, split into dependency bookkeeping, estimator,
  predictor and optimizer (target: <= 1 us per stream per round; the thesis
  reports 7 us per frame);
* **accuracy against decode budget** for person counting, event detection and
  vehicle counting: every camera live, each policy online with real gated
  decoding at budgets given as fractions of decoding everything (a token bucket
  of the budget plus one I picture, so unused budget carries over that far);
  learnt policies
  trained on the first half of every camera, everything scored on the second half
  (day and night in both); the decode saved at 90 % accuracy, the concurrency gain
  it gives a fixed decode capacity, and the share of the oracle's saving
  (``packetgame-curves.csv``, ``packetgame-curves.png``).

Usage: ``python benchmarks/packetgame.py [--testbed testbed-data/default]
[--streams 1000] [--rounds 300] [--skip-curves]``. The testbed and its black
boxes come from ``make testbed``. The reference outputs (every frame through the
black box, a few minutes per task) are cached under
``benchmarks/results/packetgame-cache/`` keyed by the testbed manifest, the
model's files and the frame size.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from edgecloud.data.bitstream import parse_seconds_per_packet
from edgecloud.data.testbed import Testbed, ensure_testbed, generate_testbed, preset
from edgecloud.data.testbed.readers import CameraVideo, open_decoder
from edgecloud.models import load_blackboxes
from edgecloud.packetgame import evaluation
from edgecloud.packetgame.calibration import calibrate_decode_costs
from edgecloud.packetgame.dependencies import DecodeCosts
from edgecloud.packetgame.online import (
    IntArray,
    Redundancy,
    count_changed,
    event_present,
    reference_outputs,
)
from edgecloud.packetgame.policies import POLICIES
from edgecloud.packetgame.replay import camera_metadata, replay, replay_decision_cost

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).parent / "results"
console = Console(width=120)

# task (black box) -> its redundancy feedback
TASKS: dict[str, Redundancy] = {
    "person-counter": count_changed,
    "event-detector": event_present,
    "vehicle-counter": count_changed,
}
# decode-all runs anyway (the saving's denominator)
CURVE_POLICIES = tuple(p for p in POLICIES if p != "decode-all")
FRACTIONS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.75)
FRAME_SIZE = (160, 120)  # the black boxes' input
TARGET = 0.9


def parse_costs(seconds: float) -> dict[str, dict[str, float]]:
    """Parse vs decode seconds per packet for one camera of each codec."""
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for codec, b_frames in track(
            (("h264", 2), ("h265", 2), ("vp9", 0)), description="parse cost"
        ):
            cfg = preset(
                "default",
                num_cameras=1,
                held_out_cameras=0,
                duration_s=seconds,
                codec=codec,
                b_frames=b_frames,
            )
            testbed, _ = generate_testbed(
                cfg, Path(tmp) / codec, workers=1, progress=False
            )
            camera = testbed.camera(0)
            packets = [p.data for p, _ in camera.packets()]
            parse = parse_seconds_per_packet(camera.picture_parser(), packets)
            out[codec] = {
                "packets": float(len(packets)),
                "parse_s": parse,
                "decode_s": _decode_seconds_per_packet(camera),
            }
    return out


def _decode_seconds_per_packet(camera: CameraVideo) -> float:
    """Median over 3 passes of one single-threaded decode of every packet."""
    import av

    passes = []
    for _ in range(3):
        with av.open(str(camera.path)) as container:
            stream = container.streams.video[0]
            decoder = open_decoder(stream.codec_context)
            packets = [p for p in container.demux(stream) if p.size]
            start = time.perf_counter()
            for packet in packets:
                decoder.decode(packet)
            decoder.decode(None)
            passes.append((time.perf_counter() - start) / len(packets))
    return statistics.median(passes)


def cached_references(
    testbed: Testbed, task: str, models_dir: Path, cache: Path
) -> list[IntArray]:
    """Every camera's reference outputs of black box ``task``, cached on disk."""
    digest = hashlib.sha256((testbed.root / "manifest.json").read_bytes())
    for path in sorted((models_dir / task).rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    digest.update(repr(FRAME_SIZE).encode())
    path = cache / f"references-{task}-{digest.hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as saved:
            return [saved[f"arr_{i}"] for i in range(len(testbed.cameras))]
    model = load_blackboxes(models_dir)[task]
    refs = [
        reference_outputs(camera, model, FRAME_SIZE)
        for camera in track(testbed.cameras, description=f"references {task}")
    ]
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, *refs)
    return refs


def curves(
    testbed: Testbed,
    costs: DecodeCosts,
    out: Path,
    tasks: list[str],
    fractions: list[float],
    rounds: int | None,
    workers: int,
) -> dict[str, Any]:
    """Accuracy-vs-budget points and the 90 %-accuracy summary, per task."""
    models_dir = testbed.root / "models"
    cameras = list(testbed.cameras)
    split = (rounds or min(len(c.labels.frames) for c in cameras)) // 2
    points: list[evaluation.CurvePoint] = []
    models = load_blackboxes(models_dir)
    for task in tasks:
        redundancy = TASKS[task]
        refs = cached_references(testbed, task, models_dir, out / "packetgame-cache")
        predictors = evaluation.train_predictors(cameras, refs, redundancy, 5, split)
        change = float(np.mean([np.mean(r[split + 1 :] != r[split:-1]) for r in refs]))
        console.print(
            f"{task}: result changes on {change:.1%} of the scored frames' "
            f"successors; training on frames < {split}, scoring frames >= {split}"
        )
        points += evaluation.budget_curve(
            task,
            cameras,
            refs,
            redundancy,
            costs,
            CURVE_POLICIES,
            fractions,
            predictors=predictors,
            score_from=split,
            rounds=rounds,
            model=_sized(models[task]),
            progress=console.print,
            workers=workers,
        )
    summary = evaluation.summary(points, TARGET)
    _print_summary(summary)
    _write_curves(points, out)
    return {
        "split-frame": split,
        "fractions": fractions,
        "target-accuracy": TARGET,
        "points": evaluation.rows(points),
        "at-target": summary,
    }


def regimes(
    testbed: Testbed,
    costs: DecodeCosts,
    out: Path,
    tasks: list[str],
    servers: int,
    fraction: float,
) -> dict[str, Any]:
    """Federated vs centralised vs local-only predictors on held-out cameras.

    The training cameras are dealt round-robin to ``servers`` edge servers; each
    regime trains on exactly those rows; PacketGame then gates the held-out
    cameras (all frames, day and night) at ``fraction`` of decoding everything.
    """
    train = [c for c in testbed.cameras if c.split == "train"]
    test = [c for c in testbed.cameras if c.split != "train"]
    index = {c.camera_id: i for i, c in enumerate(testbed.cameras)}
    groups = [train[k::servers] for k in range(servers)]
    report: dict[str, Any] = {
        "servers": [[c.camera_id for c in g] for g in groups],
        "held-out": [c.camera_id for c in test],
        "fraction": fraction,
    }
    table = Table(
        title=f"predictor training on {servers} edge servers, PacketGame on "
        f"held-out cameras {report['held-out']} at {fraction:.0%} of decode-all"
    )
    for column in (
        "task",
        "centralised",
        "federated",
        "local-only (mean)",
        "fed - cen",
    ):
        table.add_column(column, justify="right")
    for task in tasks:
        redundancy = TASKS[task]
        refs = cached_references(
            testbed, task, testbed.root / "models", out / "packetgame-cache"
        )
        trained = evaluation.train_regimes(
            groups,
            [[refs[index[c.camera_id]] for c in g] for g in groups],
            redundancy,
        )
        test_refs = [refs[index[c.camera_id]] for c in test]

        scores = [
            evaluation.gated_accuracy(p, test, test_refs, redundancy, costs, fraction)
            for p in (trained.centralised, trained.federated, *trained.local)
        ]
        cen, fed, local = scores[0], scores[1], scores[2:]
        local_acc = float(np.mean([a for a, _ in local]))
        report[task] = {
            "centralised": {"accuracy": cen[0], "saved": cen[1]},
            "federated": {"accuracy": fed[0], "saved": fed[1]},
            "local": [{"accuracy": a, "saved": s} for a, s in local],
            "local-mean-accuracy": local_acc,
        }
        table.add_row(
            task,
            f"{cen[0]:.3f}",
            f"{fed[0]:.3f}",
            f"{local_acc:.3f} ({', '.join(f'{a:.3f}' for a, _ in local)})",
            f"{(fed[0] - cen[0]) * 100:+.1f} pts",
        )
    console.print(table)
    return report


def _sized(model: Any) -> Any:
    """The black box on frames rescaled to its input size (as the references)."""
    from edgecloud.packetgame.online import resize_frames

    return lambda images: model(resize_frames(images, FRAME_SIZE))


def _print_summary(summary: dict[str, Any]) -> None:
    for task, policies in summary.items():
        table = Table(title=f"{task}: at {TARGET:.0%} accuracy (scored half)")
        for column in ("policy", "decode saved", "concurrency gain", "of oracle"):
            table.add_column(column, justify="right")
        for name, r in policies.items():
            table.add_row(
                name,
                "not reached" if r["saved"] is None else f"{r['saved']:.1%}",
                "-" if r["gain"] is None else f"{r['gain']:.2f}x",
                "-" if r["of-oracle"] is None else f"{r['of-oracle']:.2f}",
            )
        console.print(table)


def _write_curves(points: list[evaluation.CurvePoint], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = evaluation.rows(points)
    with (out / "packetgame-curves.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tasks = list(dict.fromkeys(p.task for p in points))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for name in dict.fromkeys(p.policy for p in points):
            curve = sorted(
                (p for p in points if p.task == task and p.policy == name),
                key=lambda p: p.saved,
            )
            if curve:
                ax.plot(
                    [p.saved for p in curve],
                    [p.accuracy for p in curve],
                    marker="o",
                    label=name,
                )
        ax.axhline(TARGET, color="grey", linestyle=":")
        ax.set(title=task, xlabel="decode saved", ylabel="accuracy", ylim=(0, 1.02))
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "packetgame-curves.png", dpi=120)
    plt.close(fig)


def parse_table(seconds: float) -> dict[str, dict[str, float]]:
    """:func:`parse_costs`, printed."""
    parse = parse_costs(seconds)
    table = Table(title="reading picture type and reference flag, per packet")
    for column in ("codec", "packets", "parse", "decode (1 thread)", "decode / parse"):
        table.add_column(column, justify="right")
    for codec, r in parse.items():
        table.add_row(
            codec,
            f"{r['packets']:.0f}",
            f"{r['parse_s'] * 1e6:.1f} us",
            f"{r['decode_s'] * 1e6:.0f} us",
            f"{r['decode_s'] / r['parse_s']:.0f}x",
        )
    console.print(table)

    return parse


def decision_table(
    testbed: Testbed, costs: DecodeCosts, num_streams: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Decision cost per stream and round at ``num_streams`` replayed streams."""
    cameras = [camera_metadata(c) for c in testbed.cameras]
    streams = replay(cameras, num_streams, rounds, seed=0)
    decision: dict[str, dict[str, float]] = {}
    table = Table(
        title=f"decision cost, {num_streams} replayed streams, us per stream per round"
    )
    parts = ("total", "dependencies", "estimator", "predictor", "optimizer")
    for column in ("mode", *parts):
        table.add_column(column, justify="right")
    for mode in ("packetgame", "temporal"):
        timing = replay_decision_cost(streams, costs, mode=mode)
        decision[mode] = timing
        table.add_row(
            mode,
            *(f"{timing[f'{k}-s'] * 1e6:.3f}" for k in parts),
        )
    console.print(table)
    total = decision["packetgame"]["total-s"] * 1e6
    console.print(
        f"PacketGame decides in {total:.2f} us per stream per round at "
        f"{num_streams} streams (target <= 1 us; thesis: 7 us per frame)"
    )

    return decision


def main(argv: list[str] | None = None) -> int:
    """Run every measurement; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testbed", type=Path, default=Path("testbed-data/default"))
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--parse-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip-curves", action="store_true")
    parser.add_argument(
        "--fractions",
        default=",".join(map(str, FRACTIONS)),
        help="budgets as fractions of decoding everything",
    )
    parser.add_argument(
        "--curve-rounds", type=int, default=None, help="rounds per run (all)"
    )
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-regimes", action="store_true")
    parser.add_argument(
        "--workers", type=int, default=2, help="processes running the curves' runs"
    )
    parser.add_argument("--servers", type=int, default=3, help="edge servers")
    parser.add_argument(
        "--regime-fraction", type=float, default=0.4, help="budget on held-out"
    )
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help="comma-separated black boxes"
    )
    args = parser.parse_args(argv)
    if args.streams < 1 or args.rounds < 20:
        print("error: --streams must be >= 1 and --rounds >= 20", file=sys.stderr)
        return 2
    tasks = [t for t in args.tasks.split(",") if t]
    try:
        fractions = [float(f) for f in args.fractions.split(",") if f]
    except ValueError:
        fractions = []
    if not fractions or not all(f > 0 for f in fractions):
        print(
            f"error: --fractions is {args.fractions!r}; expected numbers > 0",
            file=sys.stderr,
        )
        return 2
    if args.curve_rounds is not None and args.curve_rounds < 20:
        print("error: --curve-rounds must be >= 20", file=sys.stderr)
        return 2
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        print(f"error: --tasks has {unknown}; expected {list(TASKS)}", file=sys.stderr)
        return 2
    testbed = ensure_testbed(preset("default"), args.testbed, progress=True)
    if args.servers < 1 or args.workers < 1 or not 0 < args.regime_fraction <= 1:
        print(
            "error: --servers and --workers must be >= 1 and --regime-fraction in "
            "(0, 1]",
            file=sys.stderr,
        )
        return 2
    if (
        not (args.skip_curves and args.skip_regimes)
        and not (testbed.root / "models").is_dir()
    ):
        print(
            f"error: no black boxes under {testbed.root / 'models'}; run "
            "'make testbed' (or pass --skip-curves --skip-regimes)",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(1)
    report: dict[str, Any] = {}

    if not args.skip_scale:
        report["parse"] = parse_table(args.parse_seconds)
    costs = calibrate_decode_costs(testbed.cameras)
    report["decode_costs_ms"] = {
        "I": costs.intra,
        "P": costs.predicted,
        "B": costs.bidirectional,
    }
    console.print(
        f"decode cost model (ms per picture, single-threaded): I {costs.intra:.3f}, "
        f"P {costs.predicted:.3f}, B {costs.bidirectional:.3f}"
    )

    if not args.skip_scale:
        report["decision"] = decision_table(testbed, costs, args.streams, args.rounds)
    if not args.skip_curves:
        report["curves"] = curves(
            testbed, costs, args.out, tasks, fractions, args.curve_rounds, args.workers
        )

    if not args.skip_regimes:
        report["regimes"] = regimes(
            testbed, costs, args.out, tasks, args.servers, args.regime_fraction
        )

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "packetgame.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
