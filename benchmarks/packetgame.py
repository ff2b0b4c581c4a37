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
  reports 7 us per frame).

Usage: ``python benchmarks/packetgame.py [--testbed testbed-data/default]
[--streams 1000] [--rounds 300]``. Without a generated testbed it generates the
default one first (``make testbed`` also trains the black boxes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import track
from rich.table import Table

from edgecloud.data.bitstream import parse_seconds_per_packet
from edgecloud.data.testbed import ensure_testbed, generate_testbed, preset
from edgecloud.data.testbed.readers import CameraVideo, open_decoder
from edgecloud.packetgame.calibration import calibrate_decode_costs
from edgecloud.packetgame.replay import camera_metadata, replay, replay_decision_cost

RESULTS = Path(__file__).parent / "results"
console = Console(width=120)


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


def main(argv: list[str] | None = None) -> int:
    """Run every measurement; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testbed", type=Path, default=Path("testbed-data/default"))
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--parse-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.streams < 1 or args.rounds < 20:
        print("error: --streams must be >= 1 and --rounds >= 20", file=sys.stderr)
        return 2
    testbed = ensure_testbed(preset("default"), args.testbed, progress=True)
    report: dict[str, Any] = {}

    report["parse"] = parse_costs(args.parse_seconds)
    table = Table(title="reading picture type and reference flag, per packet")
    for column in ("codec", "packets", "parse", "decode (1 thread)", "decode / parse"):
        table.add_column(column, justify="right")
    for codec, r in report["parse"].items():
        table.add_row(
            codec,
            f"{r['packets']:.0f}",
            f"{r['parse_s'] * 1e6:.1f} us",
            f"{r['decode_s'] * 1e6:.0f} us",
            f"{r['decode_s'] / r['parse_s']:.0f}x",
        )
    console.print(table)

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

    cameras = [camera_metadata(c) for c in testbed.cameras]
    streams = replay(cameras, args.streams, args.rounds, seed=0)
    report["decision"] = {}
    table = Table(
        title=f"decision cost, {args.streams} replayed streams, us per stream per round"
    )
    parts = ("total", "dependencies", "estimator", "predictor", "optimizer")
    for column in ("mode", *parts):
        table.add_column(column, justify="right")
    for mode in ("packetgame", "temporal"):
        timing = replay_decision_cost(streams, costs, mode=mode)
        report["decision"][mode] = timing
        table.add_row(
            mode,
            *(f"{timing[f'{k}-s'] * 1e6:.3f}" for k in parts),
        )
    console.print(table)
    total = report["decision"]["packetgame"]["total-s"] * 1e6
    console.print(
        f"PacketGame decides in {total:.2f} us per stream per round at "
        f"{args.streams} streams (target <= 1 us; thesis: 7 us per frame)"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "packetgame.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
