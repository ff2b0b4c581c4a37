"""A deterministic, offline multi-camera testbed (no flwr import).

Street scenes with people, cars and trucks, daily activity peaks, a day/night
cycle with an IR night look, rare events and optional camera shake; exact ground
truth per frame; PyAV encoding (H.264, H.265, VP9, optional audio); readers of
decoded frames, demuxed packets and interleaved live streams; black-box models
trained on it. Generate with ``python -m edgecloud.data.testbed generate``.
"""

from edgecloud.data.testbed.blackbox import BlackBoxModel, ModelCost, load_blackboxes
from edgecloud.data.testbed.config import PRESETS, TestbedConfig, preset
from edgecloud.data.testbed.generate import ensure_testbed, generate_testbed
from edgecloud.data.testbed.labels import (
    EVENTS,
    TRAFFIC_STATES,
    CameraLabels,
    FrameLabel,
    ObjectBox,
)
from edgecloud.data.testbed.readers import (
    CameraVideo,
    DecodedFrame,
    LivePacket,
    PacketInfo,
    Testbed,
    interleave_live,
    load_testbed,
)
from edgecloud.data.testbed.samples import FrameSamples, load_samples
from edgecloud.data.testbed.scene import CameraScene, RenderedFrame

__all__ = [
    "EVENTS",
    "PRESETS",
    "TRAFFIC_STATES",
    "BlackBoxModel",
    "CameraLabels",
    "CameraScene",
    "CameraVideo",
    "DecodedFrame",
    "FrameLabel",
    "FrameSamples",
    "LivePacket",
    "ModelCost",
    "ObjectBox",
    "PacketInfo",
    "RenderedFrame",
    "Testbed",
    "TestbedConfig",
    "ensure_testbed",
    "generate_testbed",
    "interleave_live",
    "load_blackboxes",
    "load_samples",
    "load_testbed",
    "preset",
]
