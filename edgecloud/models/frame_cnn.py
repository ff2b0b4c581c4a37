"""FrameCnn: the black-box architectures on testbed frames and what each predicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from edgecloud.data.testbed.labels import EVENTS, TRAFFIC_STATES
from edgecloud.data.testbed.samples import (
    COUNT_CLASSES,
    MODEL_INPUT,
    SEQUENCE_ALPHABET,
    SEQUENCE_SLOTS,
)

# Per-channel pixel statistics of day and night frames together (pixels in [0, 1]).
_MEAN, _STD = 0.42, 0.25


@dataclass(frozen=True)
class ModelSpec:
    """What a black box predicts and how big it is.

    Parameters
    ----------
    name : str
        ``person-counter``, ``vehicle-counter``, ...
    target : str
        The :class:`~edgecloud.data.testbed.samples.FrameSamples` target.
    classes : tuple of str
        Class names per output slot.
    slots : int
        Output positions: 1 for a class, ``SEQUENCE_SLOTS`` for the sequence.
    widths : tuple of int
        Channels of the four conv stages.
    pool : tuple of int
        Adaptive pooling grid ``(rows, cols)`` before the classifier. Global
        pooling (1, 1) makes counts and classes independent of where the road lies
        in a held-out camera's view (a (3, 4) grid scored 0.34 instead of 0.54 on
        held-out cameras); the sequence model keeps a row of columns so the
        left-to-right order survives.
    balanced : bool
        Train on class-balanced batches (rare events: ~3 % of frames, which a
        loss weighted by 1/sqrt(frequency) still learned to ignore entirely).
    max_pool : bool
        Max instead of average pooling: a small fire or runner is one hot spot,
        which averaging over the frame dilutes.
    """

    name: str
    target: str
    classes: tuple[str, ...]
    slots: int
    widths: tuple[int, int, int, int]
    pool: tuple[int, int]
    balanced: bool = False
    max_pool: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for the model's metadata file."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(values["name"]),
            target=str(values["target"]),
            classes=tuple(values["classes"]),
            slots=int(values["slots"]),
            widths=tuple(int(w) for w in values["widths"]),  # type: ignore[arg-type]
            pool=tuple(int(p) for p in values["pool"]),  # type: ignore[arg-type]
            balanced=bool(values.get("balanced", False)),
            max_pool=bool(values.get("max_pool", False)),
        )


_COUNTS = (*(str(c) for c in range(COUNT_CLASSES - 1)), f"{COUNT_CLASSES - 1}+")

SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("person-counter", "persons", _COUNTS, 1, (16, 32, 64, 64), (1, 1)),
        ModelSpec("vehicle-counter", "vehicles", _COUNTS, 1, (12, 24, 48, 48), (1, 1)),
        ModelSpec(
            "traffic-classifier", "traffic", TRAFFIC_STATES, 1, (8, 16, 32, 32), (1, 1)
        ),
        ModelSpec(
            "event-detector", "event", EVENTS, 1, (16, 32, 32, 48), (1, 1), True, True
        ),
        ModelSpec(
            "sequence-reader",
            "sequence",
            ("-", *SEQUENCE_ALPHABET),
            SEQUENCE_SLOTS,
            (16, 32, 64, 64),
            (1, 10),
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The spec of the black box ``name``."""
    if name not in SPECS:
        raise ValueError(
            f"black-box model {name!r} unknown; expected one of {sorted(SPECS)}"
        )
    return SPECS[name]


def _stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class FrameCnn(nn.Module):
    """Four conv stages, adaptive pooling, a linear head per output slot.

    Input ``(B, 3, 120, 160)`` uint8 pixels (normalised inside, so the black box
    takes raw frames); output ``(B, slots, classes)`` logits.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        w1, w2, w3, w4 = spec.widths
        self.features = nn.Sequential(
            _stage(3, w1, 2),  # (B, w1, 60, 80)
            _stage(w1, w2, 2),  # (B, w2, 30, 40)
            _stage(w2, w3, 2),  # (B, w3, 15, 20)
            _stage(w3, w4, 1),  # (B, w4, 15, 20)
            # (B, w4, *pool)
            nn.AdaptiveMaxPool2d(spec.pool)
            if spec.max_pool
            else nn.AdaptiveAvgPool2d(spec.pool),
            nn.Flatten(),
        )
        pooled = w4 * spec.pool[0] * spec.pool[1]
        self.head = nn.Sequential(
            nn.Linear(pooled, 96),
            nn.ReLU(inplace=True),
            nn.Linear(96, spec.slots * len(spec.classes)),
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` uint8 -> ``(B, slots, classes)`` logits."""
        x = (pixels.float() / 255.0 - _MEAN) / _STD
        logits: torch.Tensor = self.head(self.features(x))
        return logits.view(len(pixels), self.spec.slots, len(self.spec.classes))


def input_shape() -> tuple[int, int, int]:
    """``(3, H, W)`` the black boxes take."""
    return (3, MODEL_INPUT[1], MODEL_INPUT[0])
