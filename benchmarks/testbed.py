"""Testbed cost model, measured on this machine in one run.

Prints and writes (``benchmarks/results/testbed.{json,csv,png}``):

* generation frames/s: rendering alone, and rendering + H.264 encoding, for one
  camera; and the wall time of the whole default testbed (8 cameras x 10 minutes,
  320x240, 10 fps) on all cores;
* encode and decode frames/s per codec (H.264, H.265, VP9) on the same frames,
  with ratios to H.264;
* decode cost per picture type (I / P / B): every packet decoded on its own by a
  single-threaded decoder, its time attributed to the picture it carries. This is
  the cost model PacketGame-style gating uses.

Usage: ``python benchmarks/testbed.py [--seconds 60] [--skip-full]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import matplotlib
import numpy as np
from av.video.frame import PictureType

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from edgecloud.data.testbed import generate_testbed, load_testbed, preset
from edgecloud.data.testbed.encode import VideoWriter
from edgecloud.data.testbed.readers import open_decoder
from edgecloud.data.testbed.scene import CameraScene

RESULTS = Path(__file__).parent / "results"
CODEC_SETTINGS = {"h264": 2, "h265": 2, "vp9": 0}  # codec -> B-frames


def _render(seconds: float) -> tuple[list[np.ndarray], float]:
    cfg = preset("default", duration_s=seconds)
    start = time.perf_counter()
    frames = [f.image for f in CameraScene(cfg, 0).frames()]
    return frames, time.perf_counter() - start


def _encode(frames: list[np.ndarray], codec: str, path: Path) -> float:
    cfg = preset(
        "default",
        duration_s=len(frames) / 10,
        codec=codec,
        b_frames=CODEC_SETTINGS[codec],
    )
    start = time.perf_counter()
    with VideoWriter(path, cfg) as writer:
        for image in frames:
            writer.write(image)
    return time.perf_counter() - start


def _decode_all(path: Path) -> tuple[float, dict[int, str]]:
    """Seconds to decode the file (to RGB) and the picture type by pts."""
    types: dict[int, str] = {}
    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            types[int(frame.pts or 0)] = PictureType(frame.pict_type).name
    return time.perf_counter() - start, types


def _decode_per_packet(path: Path, types: dict[int, str]) -> dict[str, list[float]]:
    """Seconds of each packet's decode call, grouped by its picture type."""
    costs: dict[str, list[float]] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoder = open_decoder(stream.codec_context)
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            start = time.perf_counter()
            decoder.decode(packet)
            elapsed = time.perf_counter() - start
            kind = types.get(int(packet.pts or 0), "?")
            costs.setdefault(kind, []).append(elapsed)
        decoder.decode(None)
    return costs


def main(argv: list[str] | None = None) -> int:
    """Run every measurement; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="clip per codec")
    parser.add_argument(
        "--skip-full", action="store_true", help="skip the default testbed"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "pyav": av.__version__,
        }
    }

    frames, render_s = _render(args.seconds)
    n = len(frames)
    report["render_fps"] = n / render_s
    print(f"rendering (320x240, one camera): {n / render_s:8.0f} frames/s")

    codecs: dict[str, dict[str, Any]] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for codec in CODEC_SETTINGS:
            path = (
                Path(tmp)
                / f"clip.{preset('default', codec=codec, b_frames=0).container}"
            )
            encode_s = _encode(frames, codec, path)
            decode_s, types = _decode_all(path)
            per_type = _decode_per_packet(path, types)
            entry = {
                "b_frames": CODEC_SETTINGS[codec],
                "encode_fps": n / encode_s,
                "decode_fps": n / decode_s,
                "bytes": path.stat().st_size,
                "kbps": path.stat().st_size * 8 / 1000 / args.seconds,
                "decode_us_by_type": {},
            }
            for kind, values in sorted(per_type.items()):
                us = [v * 1e6 for v in values]
                entry["decode_us_by_type"][kind] = {
                    "count": len(us),
                    "mean": statistics.fmean(us),
                    "median": statistics.median(us),
                    "p90": float(np.percentile(us, 90)),
                }
                rows.append(
                    {
                        "codec": codec,
                        "type": kind,
                        "count": len(us),
                        "mean_us": round(statistics.fmean(us), 1),
                        "median_us": round(statistics.median(us), 1),
                    }
                )
            codecs[codec] = entry
    report["codecs"] = codecs
    report["generate_fps_one_camera"] = n / (
        render_s + n / codecs["h264"]["encode_fps"]
    )

    base = codecs["h264"]
    print(
        "render + H.264 encode, one core:   "
        f"{report['generate_fps_one_camera']:8.0f} frames/s"
    )
    print(
        f"\n{'codec':6} {'encode f/s':>10} {'x h264':>7} {'decode f/s':>10} "
        f"{'x h264':>7} {'kbit/s':>7}"
        f"  decode us per picture type (mean; x P)"
    )
    for codec, e in codecs.items():
        p_mean = e["decode_us_by_type"].get("P", {}).get("mean", float("nan"))
        kinds = "  ".join(
            f"{k}: {v['mean']:6.0f} ({v['mean'] / p_mean:4.2f}x)"
            for k, v in e["decode_us_by_type"].items()
        )
        print(
            f"{codec:6} {e['encode_fps']:10.0f} "
            f"{e['encode_fps'] / base['encode_fps']:7.2f} "
            f"{e['decode_fps']:10.0f} {e['decode_fps'] / base['decode_fps']:7.2f} "
            f"{e['kbps']:7.0f}  {kinds}"
        )

    if not args.skip_full:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            generate_testbed(preset("default"), Path(tmp) / "default")
            seconds = time.perf_counter() - start
            frames_total = preset("default").num_frames * preset("default").num_cameras
            decode_start = time.perf_counter()
            decoded = sum(
                1 for _ in load_testbed(Path(tmp) / "default").camera(0).frames()
            )
            decode_s = time.perf_counter() - decode_start
        report["default_testbed"] = {
            "seconds": seconds,
            "frames": frames_total,
            "frames_per_s": frames_total / seconds,
            "target_seconds": 300,
            "decode_one_camera_fps": decoded / decode_s,
        }
        print(
            f"\ndefault testbed (8 cameras x 600 s, 320x240, 10 fps, H.264) on "
            f"{os.cpu_count()} cores: {seconds:.1f} s = "
            f"{frames_total / seconds:.0f} frames/s "
            f"({seconds / 300:.2f}x of the 5-minute budget)"
        )

    (args.out / "testbed.json").write_text(json.dumps(report, indent=2) + "\n")
    with (args.out / "testbed_decode_cost.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    kinds = ["I", "P", "B"]
    width = 0.25
    for i, (codec, e) in enumerate(codecs.items()):
        values = [e["decode_us_by_type"].get(k, {}).get("mean", 0.0) for k in kinds]
        ax.bar(np.arange(3) + i * width, values, width, label=codec)
    ax.set_xticks(np.arange(3) + width, kinds)
    ax.set_ylabel("decode time per picture (us)")
    ax.set_title("Decode cost per picture type, 320x240, single thread")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "testbed_decode_cost.png", dpi=120)
    print(
        f"\nwrote {args.out / 'testbed.json'}, testbed_decode_cost.csv, "
        "testbed_decode_cost.png"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
