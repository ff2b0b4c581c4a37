"""A deterministic, offline multi-camera testbed (no flwr import).

Street scenes with people, cars and trucks, daily activity peaks, a day/night
cycle with an IR night look, rare events and optional camera shake; exact ground
truth per frame; PyAV encoding (H.264, H.265, VP9, optional audio); readers of
decoded frames, demuxed packets and interleaved live streams. Generate with
``python -m edgecloud.data.testbed generate``. The black-box models trained on it
live in :mod:`edgecloud.models`.

The names below load their submodule on first use (PEP 562): the readers and the
encoder import PyAV, which importing the task registry (every ClientApp process
does) must not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgecloud.data.testbed.config import PRESETS as PRESETS
    from edgecloud.data.testbed.config import TestbedConfig as TestbedConfig
    from edgecloud.data.testbed.config import preset as preset
    from edgecloud.data.testbed.generate import ensure_testbed as ensure_testbed
    from edgecloud.data.testbed.generate import generate_testbed as generate_testbed
    from edgecloud.data.testbed.labels import EVENTS as EVENTS
    from edgecloud.data.testbed.labels import TRAFFIC_STATES as TRAFFIC_STATES
    from edgecloud.data.testbed.labels import CameraLabels as CameraLabels
    from edgecloud.data.testbed.labels import FrameLabel as FrameLabel
    from edgecloud.data.testbed.labels import ObjectBox as ObjectBox
    from edgecloud.data.testbed.readers import CameraVideo as CameraVideo
    from edgecloud.data.testbed.readers import DecodedFrame as DecodedFrame
    from edgecloud.data.testbed.readers import LivePacket as LivePacket
    from edgecloud.data.testbed.readers import PacketInfo as PacketInfo
    from edgecloud.data.testbed.readers import Testbed as Testbed
    from edgecloud.data.testbed.readers import interleave_live as interleave_live
    from edgecloud.data.testbed.readers import load_testbed as load_testbed
    from edgecloud.data.testbed.samples import FrameSamples as FrameSamples
    from edgecloud.data.testbed.samples import load_samples as load_samples
    from edgecloud.data.testbed.scene import CameraScene as CameraScene
    from edgecloud.data.testbed.scene import RenderedFrame as RenderedFrame

# Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "PRESETS": "config",
    "TestbedConfig": "config",
    "preset": "config",
    "ensure_testbed": "generate",
    "generate_testbed": "generate",
    "EVENTS": "labels",
    "TRAFFIC_STATES": "labels",
    "CameraLabels": "labels",
    "FrameLabel": "labels",
    "ObjectBox": "labels",
    "CameraVideo": "readers",
    "DecodedFrame": "readers",
    "LivePacket": "readers",
    "PacketInfo": "readers",
    "Testbed": "readers",
    "interleave_live": "readers",
    "load_testbed": "readers",
    "FrameSamples": "samples",
    "load_samples": "samples",
    "CameraScene": "scene",
    "RenderedFrame": "scene",
}


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` and return ``name`` from it."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "EVENTS",
    "PRESETS",
    "TRAFFIC_STATES",
    "CameraLabels",
    "CameraScene",
    "CameraVideo",
    "DecodedFrame",
    "FrameLabel",
    "FrameSamples",
    "LivePacket",
    "ObjectBox",
    "PacketInfo",
    "RenderedFrame",
    "Testbed",
    "TestbedConfig",
    "ensure_testbed",
    "generate_testbed",
    "interleave_live",
    "load_samples",
    "load_testbed",
    "preset",
]
