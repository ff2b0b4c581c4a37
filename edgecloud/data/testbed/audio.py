"""The optional audio track: ambient noise, traffic hum, event sounds.

The hum follows the vehicle count; fires crackle; an abnormal fast mover whooshes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.signal import butter, lfilter

from edgecloud.data.testbed.labels import FrameLabel

SAMPLE_RATE = 16_000


def _lowpass(x: npt.NDArray[np.float64], cutoff_hz: float) -> npt.NDArray[np.float64]:
    b, a = butter(2, cutoff_hz / (SAMPLE_RATE / 2), btype="low")
    return np.asarray(lfilter(b, a, x), dtype=np.float64)


def _bandpass(
    x: npt.NDArray[np.float64], low_hz: float, high_hz: float
) -> npt.NDArray[np.float64]:
    nyquist = SAMPLE_RATE / 2
    b, a = butter(2, [low_hz / nyquist, high_hz / nyquist], btype="band")
    return np.asarray(lfilter(b, a, x), dtype=np.float64)


def synthesize_audio(
    labels: list[FrameLabel], fps: int, seed: int, camera_id: int
) -> npt.NDArray[np.float32]:
    """Mono audio ``(num_samples,)`` in [-1, 1] aligned with the video frames.

    Parameters
    ----------
    labels : list of FrameLabel
        The camera's frame labels; the soundscape follows them frame by frame.
    fps : int
        Video frame rate (samples per frame = ``SAMPLE_RATE / fps``).
    seed, camera_id : int
        Seed the audio's own random stream.
    """
    rng = np.random.default_rng([seed, camera_id, 99])
    per_frame = SAMPLE_RATE // fps
    n = per_frame * len(labels)
    t = np.arange(n) / SAMPLE_RATE

    def envelope(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # Per-frame values -> per-sample, smoothed over ~50 ms to avoid clicks.
        return _lowpass(np.repeat(values, per_frame), 20.0)

    ambient = _lowpass(rng.normal(0, 1, n), 600.0) * 0.15
    vehicles = np.array([f.vehicles for f in labels], dtype=np.float64)
    hum = _lowpass(rng.normal(0, 1, n), 180.0) + 0.4 * np.sin(2 * np.pi * 95 * t)
    audio = ambient + envelope(np.sqrt(vehicles)) * hum * 0.25
    fire = np.array([f.event == "fire" for f in labels], dtype=np.float64)
    if fire.any():
        clicks = (rng.random(n) < 0.004) * rng.normal(0, 1, n)
        crackle = _bandpass(clicks, 800.0, 5000.0) * 6.0
        audio += envelope(fire) * crackle
    fast = np.array([f.event == "fast-mover" for f in labels], dtype=np.float64)
    if fast.any():
        whoosh = _bandpass(rng.normal(0, 1, n), 300.0, 2500.0)
        audio += envelope(fast) * whoosh * 0.8
    peak = float(np.max(np.abs(audio))) if n else 0.0
    if peak > 0.95:
        audio *= 0.95 / peak
    return audio.astype(np.float32)
