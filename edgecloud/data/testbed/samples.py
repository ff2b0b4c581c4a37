"""Decoded, downscaled frames with all their labels: what models train and test on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from filelock import FileLock

from edgecloud.data.testbed.labels import EVENTS, SEQUENCE_LETTERS, TRAFFIC_STATES

if TYPE_CHECKING:
    # Only a type here: the readers module imports PyAV, which models and tasks
    # importing the sample constants must not pay for.
    from edgecloud.data.testbed.readers import Testbed

# Model input (width, height): half the default 320x240 in each direction. At
# 80x60 queued cars merge into one blob and the held-out vehicle counter scored
# 0.34 by day instead of 0.59.
MODEL_INPUT = (160, 120)
# Counts are classified into 0 .. COUNT_CLASSES - 2 and "COUNT_CLASSES - 1 or more".
COUNT_CLASSES = 10
# The sequence label: the first SEQUENCE_SLOTS objects from the left, one class per
# slot: 0 = empty, then one per letter (P, C, T).
SEQUENCE_SLOTS = 8
SEQUENCE_ALPHABET = "".join(SEQUENCE_LETTERS.values())

IntArray = npt.NDArray[np.int64]


def encode_sequence(sequence: str) -> IntArray:
    """``"PCT"`` -> ``[1, 2, 3, 0, 0, 0, 0, 0]`` (truncated / padded to the slots)."""
    codes = [SEQUENCE_ALPHABET.index(ch) + 1 for ch in sequence[:SEQUENCE_SLOTS]]
    return np.array(codes + [0] * (SEQUENCE_SLOTS - len(codes)), dtype=np.int64)


def decode_sequence(codes: npt.ArrayLike) -> str:
    """Inverse of :func:`encode_sequence` (stops at the first empty slot)."""
    out = []
    for code in np.asarray(codes).tolist():
        if code == 0:
            break
        out.append(SEQUENCE_ALPHABET[code - 1])
    return "".join(out)


@dataclass(frozen=True)
class FrameSamples:
    """Frames ``(N, 3, H, W)`` uint8 and their labels as aligned columns."""

    images: npt.NDArray[np.uint8]
    camera: IntArray
    frame_index: IntArray
    night: IntArray
    persons: IntArray
    vehicles: IntArray
    traffic: IntArray  # index into TRAFFIC_STATES
    event: IntArray  # index into EVENTS
    sequence: IntArray  # (N, SEQUENCE_SLOTS)

    def __len__(self) -> int:
        return len(self.camera)

    def select(self, rows: npt.ArrayLike) -> FrameSamples:
        """Rows ``rows`` (a boolean mask or indices)."""
        idx = np.asarray(rows)
        return FrameSamples(**{k: v[idx] for k, v in self.__dict__.items()})

    def target(self, name: str) -> IntArray:
        """The training target ``name``; counts are capped at ``COUNT_CLASSES - 1``."""
        if name in ("persons", "vehicles"):
            values: IntArray = np.minimum(getattr(self, name), COUNT_CLASSES - 1)
            return values
        if name in ("traffic", "event", "sequence"):
            target: IntArray = getattr(self, name)
            return target
        raise ValueError(
            f"target {name!r} unknown; expected one of persons, vehicles, traffic, "
            "event, sequence"
        )

    @staticmethod
    def concatenate(parts: Sequence[FrameSamples]) -> FrameSamples:
        """Rows of all ``parts`` in order."""
        keys = FrameSamples.__dataclass_fields__
        return FrameSamples(
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in keys}
        )


def load_samples(
    testbed: Testbed,
    cameras: Sequence[int],
    every: int = 5,
    size: tuple[int, int] = MODEL_INPUT,
) -> FrameSamples:
    """Every ``every``-th decoded frame of ``cameras`` at ``size=(w, h)``, labelled.

    Decoded pictures are cached next to the videos (``cache/``), so simulated
    clients and repeated runs decode each camera once.
    """
    if every < 1:
        raise ValueError(f"every is {every}; expected an int >= 1")
    parts = []
    for cam_id in cameras:
        cam = testbed.camera(cam_id)
        cache = (
            testbed.root
            / "cache"
            / f"cam{cam_id:02d}_every{every}_{size[0]}x{size[1]}.npy"
        )
        cache.parent.mkdir(exist_ok=True)
        with FileLock(str(cache) + ".lock"):
            if cache.is_file():
                images = np.load(cache, allow_pickle=False)
            else:
                images = np.stack(
                    [
                        f.image.transpose(2, 0, 1)
                        for f in cam.frames(size=size, every=every)
                    ]
                )
                np.save(cache, images, allow_pickle=False)
        labels = cam.labels
        sampled = labels.frames[::every]
        if len(sampled) != len(images):
            raise ValueError(
                f"{cam.path}: decoded {len(images)} sampled frames but the labels have "
                f"{len(sampled)}; expected equal (regenerate the testbed)"
            )
        parts.append(
            FrameSamples(
                images=images,
                camera=np.full(len(sampled), cam_id, dtype=np.int64),
                frame_index=labels.column("frame_index")[::every],
                night=labels.column("night")[::every],
                persons=labels.column("persons")[::every],
                vehicles=labels.column("vehicles")[::every],
                traffic=labels.class_column("traffic", TRAFFIC_STATES)[::every],
                event=labels.class_column("event", EVENTS)[::every],
                sequence=np.stack([encode_sequence(f.sequence) for f in sampled]),
            )
        )
    return FrameSamples.concatenate(parts)
