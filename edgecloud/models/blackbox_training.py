"""Training and scoring the black-box models on testbed frames; the day/night shift."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 -- the PyTorch convention
from torch import nn
from tqdm import tqdm

from edgecloud.data.testbed.samples import FrameSamples, load_samples
from edgecloud.models.blackbox import BlackBoxModel, measure_cost
from edgecloud.models.frame_cnn import SPECS, FrameCnn, ModelSpec, get_spec

if TYPE_CHECKING:
    # Only a type here; the readers module imports PyAV.
    from edgecloud.data.testbed.readers import Testbed


@dataclass(frozen=True)
class BlackBoxTraining:
    """Optimiser settings for one black box (Adam, one-cycle: small and fast).

    Not :class:`edgecloud.tasks.TrainSettings` (local SGD of a federated task).
    """

    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    augment: bool = True

    def __post_init__(self) -> None:
        for key, value in (("epochs", self.epochs), ("batch_size", self.batch_size)):
            if value < 1:
                raise ValueError(f"{key} is {value}; expected an int >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr is {self.lr}; expected a float > 0")


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, flip: bool
) -> torch.Tensor:
    """Photometric jitter (and mirror) of a uint8 batch ``(B, 3, H, W)`` -> float.

    Per-image, per-channel gain and offset and sensor noise: every training camera
    then shows many colourings of its background, which is what lets a model
    generalise to the held-out cameras' unseen backgrounds (without it, held-out
    accuracy of the vehicle counter is ~0.3 at ~0.9 on the training cameras).
    """
    b = len(images)
    x = images.float()
    gain = torch.empty(b, 3, 1, 1).uniform_(0.6, 1.4, generator=generator)
    offset = torch.empty(b, 3, 1, 1).uniform_(-30.0, 30.0, generator=generator)
    sigma = torch.empty(b, 1, 1, 1).uniform_(0.0, 8.0, generator=generator)
    noise = torch.randn(x.shape, generator=generator) * sigma
    x = (x * gain + offset + noise).clamp(0.0, 255.0)
    if torch.rand(1, generator=generator).item() < 0.5:
        # Zoom out (a camera further away): shrink, pad with the border pixels. No
        # object leaves the picture, so every label still holds.
        h, w = x.shape[-2:]
        scale = float(torch.empty(1).uniform_(0.7, 1.0, generator=generator))
        sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
        small = F.interpolate(x, size=(sh, sw), mode="area")
        top = int(torch.randint(0, h - sh + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - sw + 1, (1,), generator=generator))
        x = F.pad(small, (left, w - sw - left, top, h - sh - top), mode="replicate")
    if flip:  # mirrored scenes keep their counts, classes and events
        mirror = torch.rand(b, generator=generator) < 0.5
        x[mirror] = x[mirror].flip(-1)
    return x


def train_blackbox(
    spec: ModelSpec,
    train: FrameSamples,
    settings: BlackBoxTraining,
    progress: bool = False,
) -> BlackBoxModel:
    """Train ``spec`` on ``train`` and measure its cost (metrics left empty)."""
    if len(train) == 0:
        raise ValueError(f"no training frames for {spec.name!r}; expected at least one")
    torch.manual_seed(settings.seed)
    net = FrameCnn(spec)
    images = torch.from_numpy(train.images)
    target = torch.from_numpy(train.target(spec.target)).reshape(len(train), -1)
    # Rare classes (jams, high counts) get loss weights ~ 1/sqrt(frequency); a
    # `balanced` spec instead draws every class equally often (with replacement).
    counts = torch.bincount(target.reshape(-1), minlength=len(spec.classes)).float()
    inverse = torch.where(counts > 0, counts.sum() / counts.clamp(min=1), 0.0)
    if spec.balanced:
        draw = inverse[target[:, 0]]
        criterion = nn.CrossEntropyLoss()
    else:
        weights = inverse.sqrt()
        criterion = nn.CrossEntropyLoss(weight=weights / weights[counts > 0].mean())
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    steps = settings.epochs * (
        (len(train) + settings.batch_size - 1) // settings.batch_size
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, settings.lr, total_steps=steps
    )
    generator = torch.Generator().manual_seed(settings.seed)
    start = time.perf_counter()
    net.train()
    for _ in tqdm(range(settings.epochs), desc=spec.name, disable=not progress):
        if spec.balanced:
            order = torch.multinomial(draw, len(train), True, generator=generator)
        else:
            order = torch.randperm(len(train), generator=generator)
        for batch in torch.split(order, settings.batch_size):
            inputs = images[batch]
            if settings.augment:
                # A mirror would reverse the left-to-right sequence label.
                inputs = augment_batch(inputs, generator, flip=spec.slots == 1)
            logits = net(inputs)  # (B, slots, classes)
            loss = criterion(
                logits.reshape(-1, len(spec.classes)), target[batch].reshape(-1)
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    net.eval()
    return BlackBoxModel(
        spec,
        net,
        measure_cost(net),
        training={
            "frames": len(train),
            "epochs": settings.epochs,
            "batch_size": settings.batch_size,
            "lr": settings.lr,
            "seed": settings.seed,
            "augment": settings.augment,
            "seconds": round(time.perf_counter() - start, 2),
        },
    )


def score(model: BlackBoxModel, samples: FrameSamples) -> dict[str, float]:
    """Held-out figures of ``model`` on ``samples``.

    Accuracy is exact (the whole sequence for the sequence model); counts add MAE
    and within-one accuracy, sequences per-slot accuracy, classes balanced accuracy.
    """
    if len(samples) == 0:
        return {}
    return _metrics(model, _predict(model, samples), _truth(model, samples))


def _predict(model: BlackBoxModel, samples: FrameSamples) -> npt.NDArray[np.int64]:
    # (N, slots) predictions, in chunks of 256 frames to bound memory
    return np.concatenate(
        [
            model.logits(samples.images[i : i + 256]).argmax(-1)
            for i in range(0, len(samples), 256)
        ]
    )


def _truth(model: BlackBoxModel, samples: FrameSamples) -> npt.NDArray[np.int64]:
    return samples.target(model.spec.target).reshape(len(samples), -1)


def _metrics(
    model: BlackBoxModel,
    predicted: npt.NDArray[np.int64],
    truth: npt.NDArray[np.int64],
) -> dict[str, float]:
    if len(truth) == 0:
        return {}
    out: dict[str, float] = {"frames": float(len(truth))}
    if model.spec.slots > 1:
        out["accuracy"] = float((predicted == truth).all(axis=1).mean())
        out["slot_accuracy"] = float((predicted == truth).mean())
        return out
    p, t = predicted[:, 0], truth[:, 0]
    out["accuracy"] = float((p == t).mean())
    if model.spec.target in ("persons", "vehicles"):
        out["mae"] = float(np.abs(p - t).mean())
        out["within_one"] = float((np.abs(p - t) <= 1).mean())
    else:
        recalls = [float((p[t == c] == c).mean()) for c in np.unique(t)]
        out["balanced_accuracy"] = float(np.mean(recalls))
    return out


def score_by_domain(model: BlackBoxModel, samples: FrameSamples) -> dict[str, float]:
    """:func:`score` on all frames, and ``day_`` / ``night_`` prefixed subsets.

    The model runs once over the frames; the subsets reuse its predictions.
    """
    if len(samples) == 0:
        return {}
    predicted, truth = _predict(model, samples), _truth(model, samples)
    out = _metrics(model, predicted, truth)
    for name, mask in (("day", samples.night == 0), ("night", samples.night == 1)):
        subset = _metrics(model, predicted[mask], truth[mask])
        out.update({f"{name}_{k}": v for k, v in subset.items()})
    return out


def train_all(
    testbed: Testbed,
    out_dir: Path,
    names: Sequence[str] = tuple(SPECS),
    settings: BlackBoxTraining = BlackBoxTraining(),
    every: int = 5,
    progress: bool = True,
) -> dict[str, BlackBoxModel]:
    """Train every black box on the training cameras and save it.

    Each is scored on the held-out cameras (all, day, night) and written to
    ``out_dir/<name>/`` with its metadata.
    """
    cfg = testbed.config
    train = load_samples(testbed, cfg.train_cameras, every)
    test = load_samples(testbed, cfg.test_cameras, every)
    models = {}
    specs = [get_spec(name) for name in names]  # unknown names fail before training
    for name, spec in zip(names, specs, strict=True):
        model = train_blackbox(spec, train, settings, progress)
        model.metrics.update(score_by_domain(model, test))
        model.training["train_cameras"] = list(cfg.train_cameras)
        model.training["test_cameras"] = list(cfg.test_cameras)
        model.training["every"] = every
        model.save(out_dir / name)
        models[name] = model
    return models


SPLITS = ("cameras", "time")


def domain_shift(
    testbed: Testbed,
    settings: BlackBoxTraining = BlackBoxTraining(),
    every: int = 5,
    target_model: str = "vehicle-counter",
    split: str = "cameras",
) -> dict[str, float]:
    """Thesis Fig. 3.5 / 5.3, measured: day-only training vs day and night.

    Both models are scored on held-out day and night frames.

    ``split="cameras"`` holds out the testbed's test cameras (day/night shift on
    top of a camera shift); ``split="time"`` holds out every fourth 5-second block
    of all cameras, which isolates the day/night shift.
    """
    cfg = testbed.config
    if split == "cameras":
        train = load_samples(testbed, cfg.train_cameras, every)
        test = load_samples(testbed, cfg.test_cameras, every)
    elif split == "time":
        frames = load_samples(testbed, range(cfg.num_cameras), every)
        held_out = (frames.frame_index // (5 * cfg.fps)) % 4 == 3
        train, test = frames.select(~held_out), frames.select(held_out)
    else:
        raise ValueError(f"split is {split!r}; expected one of {SPLITS}")
    spec = get_spec(target_model)
    # One model trains on day frames only, and both are scored on held-out day and
    # night frames: a testbed too short for that cannot show the shift.
    counts = {
        "training day": int(np.sum(train.night == 0)),
        "held-out day": int(np.sum(test.night == 0)),
        "held-out night": int(np.sum(test.night == 1)),
    }
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise ValueError(
            f"split {split!r} of this testbed has no {', '.join(empty)} frames; "
            "expected some of each (generate a longer testbed, e.g. 48 s of the "
            "tiny preset)"
        )
    day_only = train_blackbox(spec, train.select(train.night == 0), settings)
    both = train_blackbox(spec, train, settings)
    a, b = score_by_domain(day_only, test), score_by_domain(both, test)
    return {
        "day_only_day_accuracy": a["day_accuracy"],
        "day_only_night_accuracy": a["night_accuracy"],
        "both_day_accuracy": b["day_accuracy"],
        "both_night_accuracy": b["night_accuracy"],
        "night_drop_points": 100 * (a["day_accuracy"] - a["night_accuracy"]),
        "night_recovery_points": 100 * (b["night_accuracy"] - a["night_accuracy"]),
    }
