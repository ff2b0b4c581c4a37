"""Encoding frames (and audio) into H.264 / H.265 / VP9 files with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from edgecloud.data.testbed.audio import SAMPLE_RATE
from edgecloud.data.testbed.config import AUDIO_CODECS, CODECS, TestbedConfig


def _encoder_options(cfg: TestbedConfig) -> dict[str, str]:
    # One encoder thread: the testbed parallelises over cameras instead, and a
    # single thread keeps every encoder's output reproducible.
    if cfg.codec == "h264":
        return {
            "preset": "veryfast",
            "threads": "1",
            # Fixed GOP: no scene-cut key frames, so `gop` means what it says.
            # no-mbtree: this libx264 build's macroblock-tree rate control gives
            # different pictures for identical input on about half the runs
            # (measured: 2 decoded variants in 8 encodes; 1 in 16 without it).
            "x264-params": f"keyint={cfg.gop}:min-keyint={cfg.gop}:scenecut=0"
            f":bframes={cfg.b_frames}:no-mbtree=1",
        }
    if cfg.codec == "h265":
        return {
            "preset": "ultrafast",
            "x265-params": f"keyint={cfg.gop}:min-keyint={cfg.gop}:scenecut=0"
            f":bframes={cfg.b_frames}:pools=1:frame-threads=1:log-level=error",
        }
    return {
        "deadline": "realtime",
        "cpu-used": "8",
        "threads": "1",
        "lag-in-frames": "0",
        # kf_min_dist = kf_max_dist = gop (FFmpeg's libvpx wrapper sets the minimum
        # only when keyint_min equals the GOP). libvpx's real-time mode still adds
        # a key frame where the picture changes abruptly (measured at 330x250, GOP
        # 50: at both day/night switches, 12 key frames instead of 10; none at
        # 320x240); 'good' quality mode does not, at ~4x the encoding time. So VP9
        # key frames come at least every `gop` frames, and the manifest lists them.
        "keyint_min": str(cfg.gop),
    }


class VideoWriter:
    """Write RGB frames ``(H, W, 3) uint8`` to ``path`` with the testbed's codec.

    Use as a context manager; :meth:`write_audio` adds the audio track before
    closing.
    """

    def __init__(self, path: Path, cfg: TestbedConfig) -> None:
        self.cfg = cfg
        self._container = av.open(str(path), mode="w", format=cfg.container)
        stream = self._container.add_stream(
            CODECS[cfg.codec], rate=cfg.fps, options=_encoder_options(cfg)
        )
        assert isinstance(stream, VideoStream)
        stream.width, stream.height = cfg.width, cfg.height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = cfg.bitrate_kbps * 1000
        stream.codec_context.gop_size = cfg.gop
        stream.codec_context.max_b_frames = cfg.b_frames
        stream.codec_context.time_base = Fraction(1, cfg.fps)
        self._video = stream
        self._audio: AudioStream | None = None
        if cfg.audio:
            audio = self._container.add_stream(
                AUDIO_CODECS[cfg.codec], rate=SAMPLE_RATE
            )
            assert isinstance(audio, AudioStream)
            audio.layout = "mono"
            audio.bit_rate = 32_000
            self._audio = audio
        self._index = 0
        self.key_frames: list[int] = []  # frame indices of the key frames written

    def _mux_video(self, packets: list[av.Packet[Any]]) -> None:
        for packet in packets:
            if packet.is_keyframe and packet.pts is not None:
                self.key_frames.append(int(packet.pts))  # pts = frame index here
        self._container.mux(packets)

    def write(self, image: npt.NDArray[np.uint8]) -> None:
        """Encode the next frame (pts = frame index in units of 1/fps)."""
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._index
        frame.time_base = Fraction(1, self.cfg.fps)
        self._index += 1
        self._mux_video(self._video.encode(frame))

    def write_audio(self, samples: npt.NDArray[np.float32]) -> None:
        """Encode the whole mono track ``(num_samples,)`` in [-1, 1]."""
        if self._audio is None:
            raise ValueError(
                "write_audio called but the testbed setting 'audio' is false; "
                "expected audio=True"
            )
        # AudioFifo re-chunks into the encoder's frame size (1024 AAC, 960 Opus).
        fifo = av.AudioFifo()
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = 0
        frame.time_base = Fraction(1, SAMPLE_RATE)
        fifo.write(frame)
        resampler = av.AudioResampler(
            format=self._audio.codec_context.format,
            layout="mono",
            rate=self._audio.codec_context.sample_rate,
        )
        size = self._audio.codec_context.frame_size or 1024
        for chunk in fifo.read_many(size, partial=True):
            for resampled in resampler.resample(chunk):
                self._container.mux(self._audio.encode(resampled))
        for resampled in resampler.resample(None):
            self._container.mux(self._audio.encode(resampled))
        self._container.mux(self._audio.encode(None))

    def close(self) -> None:
        """Flush the encoder(s) and finish the file."""
        self._mux_video(self._video.encode(None))
        self._container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
