"""Testbed settings: cameras, clip length, resolution, codec, and named presets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

CODECS: dict[str, str] = {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9"}
# Container per codec: MP4 for the MPEG codecs (with AAC audio), WebM for VP9 (Opus).
CONTAINERS: dict[str, str] = {"h264": "mp4", "h265": "mp4", "vp9": "webm"}
AUDIO_CODECS: dict[str, str] = {"h264": "aac", "h265": "aac", "vp9": "libopus"}


@dataclass(frozen=True)
class TestbedConfig:
    """Everything that determines a generated testbed (same config, same bytes).

    Parameters
    ----------
    num_cameras : int
        Number of cameras; each has its own background, viewpoint scale and noise.
    duration_s : float
        Clip length per camera in (video) seconds.
    fps : int
        Frames per second.
    width, height : int
        Frame size in pixels (even numbers, for 4:2:0 chroma).
    seed : int
        Master seed; camera ``c`` draws from ``numpy.random.default_rng([seed, c])``.
    codec : str
        ``"h264"`` (libx264), ``"h265"`` (libx265) or ``"vp9"`` (libvpx-vp9).
    bitrate_kbps : int
        Target video bit rate.
    gop : int
        Key-frame interval in frames (a fixed GOP: scene-cut key frames are off).
    b_frames : int
        Consecutive B-frames allowed (H.264/H.265 only; VP9 has none).
    audio : bool
        Add an audio track (ambient noise, traffic hum, event sounds).
    shake : bool
        Mild camera shake (a few pixels of jitter, labels follow it).
    start_hour : float
        Simulated time of day at the first frame.
    sim_hours : float
        Simulated hours the clip covers; 24 compresses a whole day (morning and
        evening peaks, night) into every clip.
    night_start_hour, night_end_hour : float
        Night (IR look: grayscale, other noise and contrast) is
        ``hour >= night_start_hour or hour < night_end_hour``.
    events_per_hour : float
        Expected rare events (fire-like flicker or an abnormal fast mover) per
        *video* hour per camera.
    held_out_cameras : int
        The last this many cameras are the held-out (test) domain.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class despite the name

    num_cameras: int = 8
    duration_s: float = 600.0
    fps: int = 10
    width: int = 320
    height: int = 240
    seed: int = 0
    codec: str = "h264"
    bitrate_kbps: int = 300
    gop: int = 50
    b_frames: int = 2
    audio: bool = False
    shake: bool = False
    start_hour: float = 0.0
    sim_hours: float = 24.0
    night_start_hour: float = 19.0
    night_end_hour: float = 6.0
    events_per_hour: float = 120.0
    held_out_cameras: int = 2

    def __post_init__(self) -> None:
        checks: list[tuple[str, Any, bool, str]] = [
            ("num_cameras", self.num_cameras, self.num_cameras >= 1, "an int >= 1"),
            ("duration_s", self.duration_s, self.duration_s > 0, "> 0"),
            ("fps", self.fps, 1 <= self.fps <= 120, "an int in [1, 120]"),
            (
                "width",
                self.width,
                self.width >= 64 and self.width % 2 == 0,
                "an even int >= 64",
            ),
            (
                "height",
                self.height,
                self.height >= 48 and self.height % 2 == 0,
                "an even int >= 48",
            ),
            ("codec", self.codec, self.codec in CODECS, f"one of {sorted(CODECS)}"),
            ("bitrate_kbps", self.bitrate_kbps, self.bitrate_kbps >= 10, ">= 10"),
            ("gop", self.gop, self.gop >= 1, "an int >= 1"),
            ("b_frames", self.b_frames, 0 <= self.b_frames <= 8, "an int in [0, 8]"),
            ("sim_hours", self.sim_hours, 0 < self.sim_hours <= 240, "in (0, 240]"),
            (
                "events_per_hour",
                self.events_per_hour,
                self.events_per_hour >= 0,
                ">= 0",
            ),
            (
                "held_out_cameras",
                self.held_out_cameras,
                0 <= self.held_out_cameras < self.num_cameras,
                f"an int in [0, num_cameras={self.num_cameras})",
            ),
        ]
        for key, value, ok, expected in checks:
            if not ok:
                raise ValueError(
                    f"testbed setting '{key}' has value {value!r}; expected {expected}"
                )
        if self.codec == "vp9" and self.b_frames:
            raise ValueError(
                f"testbed setting 'b_frames' has value {self.b_frames!r} with codec "
                "'vp9'; expected 0 (VP9 has no B-frames)"
            )
        for key in ("start_hour", "night_start_hour", "night_end_hour"):
            hour = getattr(self, key)
            if not 0 <= hour < 24:
                raise ValueError(
                    f"testbed setting '{key}' has value {hour!r}; expected an hour "
                    "in [0, 24)"
                )

    @property
    def num_frames(self) -> int:
        """Frames per camera."""
        return round(self.duration_s * self.fps)

    @property
    def scale(self) -> float:
        """Object size scale relative to the 240-line reference frame."""
        return self.height / 240.0

    @property
    def container(self) -> str:
        """File extension / container format for the codec."""
        return CONTAINERS[self.codec]

    @property
    def train_cameras(self) -> tuple[int, ...]:
        """Camera ids of the training domain."""
        return tuple(range(self.num_cameras - self.held_out_cameras))

    @property
    def test_cameras(self) -> tuple[int, ...]:
        """Camera ids of the held-out domain."""
        return tuple(range(self.num_cameras - self.held_out_cameras, self.num_cameras))

    def hour_of_frame(self, frame_index: int) -> float:
        """Simulated hour of day (``[0, 24)``) at ``frame_index``."""
        elapsed = frame_index / max(self.num_frames, 1) * self.sim_hours
        return (self.start_hour + elapsed) % 24.0

    def is_night(self, hour: float) -> bool:
        """Whether the camera is in IR (night) mode at ``hour``."""
        if self.night_start_hour > self.night_end_hour:
            return hour >= self.night_start_hour or hour < self.night_end_hour
        return self.night_start_hour <= hour < self.night_end_hour

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the manifest stores it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TestbedConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"testbed settings {unknown} unknown; expected keys among "
                f"{sorted(known)}"
            )
        return cls(**dict(values))


# Named configurations. ``tiny`` is what the tests use (seconds); ``default`` is the
# documented testbed (8 cameras x 10 minutes, 320x240 at 10 fps).
PRESETS: dict[str, TestbedConfig] = {
    "tiny": TestbedConfig(
        num_cameras=3,
        duration_s=24.0,
        width=160,
        height=120,
        gop=20,
        events_per_hour=600.0,
        held_out_cameras=1,
    ),
    "small": TestbedConfig(num_cameras=4, duration_s=120.0, held_out_cameras=1),
    "default": TestbedConfig(),
}


def preset(name: str, **overrides: Any) -> TestbedConfig:
    """The preset ``name`` with ``overrides`` applied (validated).

    A preset's B-frames belong to the codecs that have them: choosing ``vp9``
    without an explicit ``b_frames`` drops them (an explicit one is checked).
    """
    if name not in PRESETS:
        raise ValueError(
            f"testbed preset {name!r} unknown; expected one of {sorted(PRESETS)}"
        )
    if overrides.get("codec") == "vp9":
        overrides.setdefault("b_frames", 0)
    return dataclasses.replace(PRESETS[name], **overrides)
