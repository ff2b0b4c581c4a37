"""Generating a testbed to disk: videos, label files and the manifest."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from tqdm import tqdm

from edgecloud.data.testbed.audio import synthesize_audio
from edgecloud.data.testbed.config import TestbedConfig
from edgecloud.data.testbed.encode import VideoWriter
from edgecloud.data.testbed.labels import (
    EVENTS,
    OBJECT_KINDS,
    TRAFFIC_STATES,
    FrameLabel,
    ObjectBox,
    write_csv,
)
from edgecloud.data.testbed.readers import (
    MANIFEST,
    MANIFEST_FORMAT,
    Testbed,
    load_testbed,
)
from edgecloud.data.testbed.scene import CameraScene


@dataclass(frozen=True)
class CameraTimings:
    """Seconds spent on one camera (kept out of the manifest: not deterministic)."""

    camera_id: int
    frames: int
    render_s: float
    encode_s: float


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate_camera(
    cfg: TestbedConfig, camera_id: int, out_dir: Path
) -> tuple[dict[str, Any], CameraTimings]:
    """Render, label and encode one camera; returns its manifest entry and timings."""
    scene = CameraScene(cfg, camera_id)
    stem = f"cam{camera_id:02d}"
    video = out_dir / f"{stem}.{cfg.container}"
    frame_labels: list[FrameLabel] = []
    objects: list[ObjectBox] = []
    render_s = encode_s = 0.0
    with VideoWriter(video, cfg) as writer:
        start = time.perf_counter()
        for rendered in scene.frames():
            mid = time.perf_counter()
            render_s += mid - start
            writer.write(rendered.image)
            frame_labels.append(rendered.label)
            objects.extend(rendered.objects)
            start = time.perf_counter()
            encode_s += start - mid
        if cfg.audio:
            writer.write_audio(
                synthesize_audio(frame_labels, cfg.fps, cfg.seed, camera_id)
            )
    write_csv(out_dir / f"{stem}.frames.csv", frame_labels)
    write_csv(out_dir / f"{stem}.objects.csv", objects)
    p = scene.profile
    entry: dict[str, Any] = {
        "camera_id": camera_id,
        "split": "test" if camera_id in cfg.test_cameras else "train",
        "video": video.name,
        "frames_csv": f"{stem}.frames.csv",
        "objects_csv": f"{stem}.objects.csv",
        "num_frames": len(frame_labels),
        # every `gop` frames; VP9 may add some where the picture changes abruptly
        "key_frames": sorted(writer.key_frames),
        "profile": {
            k: (round(v, 6) if isinstance(v, float) else v)
            for k, v in dataclasses.asdict(p).items()
        },
        "labels_sha256": {
            "frames": _sha256(out_dir / f"{stem}.frames.csv"),
            "objects": _sha256(out_dir / f"{stem}.objects.csv"),
        },
        "stats": {
            "night_frames": sum(f.night for f in frame_labels),
            "traffic": dict(sorted(Counter(f.traffic for f in frame_labels).items())),
            "events": dict(sorted(Counter(f.event for f in frame_labels).items())),
            "max_persons": max((f.persons for f in frame_labels), default=0),
            "max_vehicles": max((f.vehicles for f in frame_labels), default=0),
        },
    }
    return entry, CameraTimings(camera_id, len(frame_labels), render_s, encode_s)


def _generate_one(
    args: tuple[TestbedConfig, int, Path],
) -> tuple[dict[str, Any], CameraTimings]:
    return generate_camera(*args)


def generate_testbed(
    cfg: TestbedConfig,
    out_dir: Path,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[Testbed, list[CameraTimings]]:
    """Generate every camera into ``out_dir`` (in parallel) and write the manifest.

    The manifest is written last, so a directory with a manifest is complete.
    Same config, same label files and manifest bytes, same decoded frames.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    workers = workers or min(cfg.num_cameras, os.cpu_count() or 1)
    jobs = [(cfg, cam, out_dir) for cam in range(cfg.num_cameras)]
    results: list[tuple[dict[str, Any], CameraTimings]] = []
    bar = tqdm(
        total=cfg.num_cameras, desc="testbed cameras", unit="cam", disable=not progress
    )
    if workers <= 1:
        for job in jobs:
            results.append(_generate_one(job))
            bar.update()
    else:
        # spawn, not fork: a forked child inherits the caller's threads' state
        # (a SuperNode's or a test session's gRPC objects), and a gRPC finalizer
        # run by the child's garbage collector waits forever for a thread the
        # child does not have (seen: the testbed fixture hung after gRPC tests)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for result in pool.map(_generate_one, jobs):
                results.append(result)
                bar.update()
    bar.close()
    manifest = {
        "format": MANIFEST_FORMAT,
        "config": cfg.to_dict(),
        "classes": {
            "traffic": list(TRAFFIC_STATES),
            "event": list(EVENTS),
            "object_kinds": list(OBJECT_KINDS),
        },
        "cameras": [entry for entry, _ in results],
    }
    (out_dir / MANIFEST).write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    )
    return load_testbed(out_dir), [t for _, t in results]


def ensure_testbed(
    cfg: TestbedConfig, out_dir: Path, progress: bool = False
) -> Testbed:
    """The testbed in ``out_dir``, generated first if it has no manifest yet.

    Concurrent callers (simulated clients, SuperNodes sharing a disk) are serialised
    by a file lock so that only one generates.

    Raises
    ------
    ValueError
        If ``out_dir`` holds a testbed generated with different settings (it is
        never overwritten: delete it or choose another directory).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir.parent / f".{out_dir.name}.lock")):
        if not (out_dir / MANIFEST).is_file():
            testbed, _ = generate_testbed(cfg, out_dir, progress=progress)
            return testbed
        existing = load_testbed(out_dir)
        if existing.config != cfg:
            raise ValueError(
                f"{out_dir} holds a testbed with settings {existing.config.to_dict()}; "
                f"expected {cfg.to_dict()} (delete it or use another directory)"
            )
        return existing
