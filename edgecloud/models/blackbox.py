"""The uniform black-box interface: frames in, predictions out, plus cost metadata.

Later work (PacketGame, InFi, MLink) treats these models as opaque services: it
sees only :meth:`BlackBoxModel.__call__` and :class:`ModelCost`.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 -- the PyTorch convention
from torch.utils.flop_counter import FlopCounterMode

from edgecloud.data.testbed.samples import MODEL_INPUT
from edgecloud.models.frame_cnn import FrameCnn, ModelSpec, input_shape

WEIGHTS_FILE = "model.pt"
META_FILE = "meta.json"


@dataclass(frozen=True)
class ModelCost:
    """What one frame costs a black box (measured on the machine that saved it).

    Parameters
    ----------
    parameters : int
        Trainable parameters.
    flops : int
        Floating-point operations per frame (convolutions and matmuls, from
        ``torch.utils.flop_counter``; a multiply-add counts 2).
    peak_memory_bytes : int
        Upper bound of inference memory for one frame: parameters and buffers plus
        every intermediate activation (hooks on each module).
    latency_ms : float
        Median wall time of one frame (batch 1, CPU), 30 runs after 5 warm-ups.
    """

    parameters: int
    flops: int
    peak_memory_bytes: int
    latency_ms: float


def measure_cost(
    net: torch.nn.Module, repeats: int = 30, example: torch.Tensor | None = None
) -> ModelCost:
    """Count and time ``net`` on one input.

    ``example`` is that input (a batch of one); by default an all-zero frame of
    the black-box size.
    """
    net.eval()
    frame = (
        torch.zeros((1, *input_shape()), dtype=torch.uint8)
        if example is None
        else example
    )
    activation_bytes = 0

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal activation_bytes
        if isinstance(output, torch.Tensor):
            activation_bytes += output.numel() * output.element_size()

    leaves = [m for m in net.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(frame)
    for handle in handles:
        handle.remove()
    state_bytes = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    with torch.no_grad():
        for _ in range(5):
            net(frame)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            net(frame)
            times.append(time.perf_counter() - start)
    return ModelCost(
        parameters=sum(p.numel() for p in net.parameters()),
        flops=int(counter.get_total_flops()),
        peak_memory_bytes=int(state_bytes + activation_bytes),
        latency_ms=round(statistics.median(times) * 1000, 4),
    )


def to_model_input(frames: npt.NDArray[np.uint8]) -> torch.Tensor:
    """``(N, H, W, 3)`` or ``(N, 3, H, W)`` uint8 frames of any size -> model input.

    Frames not already at the model size are area-resized (``(N, 3, 120, 160)``).
    """
    if frames.ndim != 4:
        raise ValueError(f"frames have shape {frames.shape}; expected (N, H, W, 3)")
    tensor = torch.from_numpy(np.ascontiguousarray(frames))
    if tensor.shape[-1] == 3 and tensor.shape[1] != 3:
        tensor = tensor.permute(0, 3, 1, 2)
    if tensor.shape[1] != 3:
        raise ValueError(
            f"frames have shape {frames.shape}; expected 3 colour channels"
        )
    width, height = MODEL_INPUT
    if tuple(tensor.shape[2:]) != (height, width):
        resized = F.interpolate(tensor.float(), size=(height, width), mode="area")
        tensor = resized.round().clamp(0, 255).to(torch.uint8)
    return tensor


class BlackBoxModel:
    """A trained model behind a uniform input -> output interface.

    ``model(frames)`` takes decoded RGB frames ``(N, H, W, 3)`` uint8 and returns
    class indices ``(N,)`` (counts, traffic state, event) or ``(N, slots)`` for the
    sequence model. :attr:`cost` and :attr:`metrics` describe it.
    """

    def __init__(
        self,
        spec: ModelSpec,
        net: FrameCnn,
        cost: ModelCost,
        metrics: dict[str, float] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.net = net.eval()
        self.cost = cost
        self.metrics = dict(metrics or {})
        self.training = dict(training or {})

    @property
    def name(self) -> str:
        """The model's name (``vehicle-counter``, ...)."""
        return self.spec.name

    @torch.no_grad()
    def logits(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Raw scores ``(N, slots, classes)``."""
        out = self.net(to_model_input(frames))
        return np.asarray(out.numpy(), dtype=np.float32)

    def __call__(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
        """Predictions: ``(N,)`` class indices, or ``(N, slots)`` for sequences."""
        predictions: npt.NDArray[np.int64] = self.logits(frames).argmax(axis=-1)
        return predictions[:, 0] if self.spec.slots == 1 else predictions

    def save(self, directory: Path) -> None:
        """Write ``model.pt`` (state dict) and ``meta.json`` into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), directory / WEIGHTS_FILE)
        meta = {
            "spec": self.spec.to_dict(),
            "input": {
                "width": MODEL_INPUT[0],
                "height": MODEL_INPUT[1],
                "dtype": "uint8",
            },
            "cost": asdict(self.cost),
            "metrics": self.metrics,
            "training": self.training,
        }
        (directory / META_FILE).write_text(
            json.dumps(meta, indent=2, sort_keys=True) + "\n"
        )

    @classmethod
    def load(cls, directory: Path) -> BlackBoxModel:
        """Load a model written by :meth:`save` (weights only: no code is unpickled)."""
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"no black-box metadata at {meta_path}; train the models with "
                "'python -m edgecloud.data.testbed train-models'"
            )
        meta = json.loads(meta_path.read_text())
        spec = ModelSpec.from_dict(meta["spec"])
        net = FrameCnn(spec)
        weights = directory / WEIGHTS_FILE
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        return cls(
            spec,
            net,
            ModelCost(**meta["cost"]),
            meta.get("metrics"),
            meta.get("training"),
        )


def load_blackboxes(directory: Path) -> dict[str, BlackBoxModel]:
    """Every black box saved under ``directory/<name>/``."""
    models = {
        sub.name: BlackBoxModel.load(sub)
        for sub in sorted(directory.iterdir())
        if (sub / META_FILE).is_file()
    }
    if not models:
        raise FileNotFoundError(f"no black-box models under {directory}")
    return models
