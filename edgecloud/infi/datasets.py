"""InFi's labelled data per modality: filter inputs, black-box outputs, skip labels.

Each builder returns a :class:`FilterDataset`: what the filter sees (``inputs``),
the black box's output per input (``outputs``: what the redundancy measure and
the reuse labels ``1(y_i == y_j)`` are computed from), the skip label
``redundant = f_h(outputs)`` (:mod:`edgecloud.infi.redundancy`), and per sample
its camera, frame index and night flag, for splitting by camera (train vs
held-out domain) and by time of day (the day -> night shift experiment).

===========  =============================  ====================================
builder      ``inputs``                     ``outputs``
===========  =============================  ====================================
image        ``(N, 3, H, W)`` float32       the black box on the frame
video        ``(N, T, 3, H, W)`` float32    the black box on the clip's last frame
audio        ``(N, L)`` float32 waveform    the window's event (ground truth)
vector       ``(N, ...)`` float32           given by the caller (a split cut)
===========  =============================  ====================================

Pixels are scaled from uint8 to ``[0, 1]``; the black box always gets the uint8
frames ``(N, H, W, 3)`` it was trained on. No flwr import; the testbed readers
(and PyAV) are only touched through the ``testbed`` argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

from edgecloud.data.testbed.audio import SAMPLE_RATE
from edgecloud.data.testbed.labels import EVENTS
from edgecloud.data.testbed.samples import MODEL_INPUT, load_samples
from edgecloud.infi.features import MODALITIES
from edgecloud.infi.redundancy import Redundancy, class_subset, zero_count
from edgecloud.validation import check_positive_int, check_real

if TYPE_CHECKING:
    # Only a type here: the readers module imports PyAV.
    from edgecloud.data.testbed.readers import CameraVideo, Testbed

FrameModel: TypeAlias = Callable[[npt.NDArray[np.uint8]], npt.ArrayLike]
"""A black box: uint8 frames ``(N, H, W, 3)`` -> one output per frame ``(N,)``
(:class:`edgecloud.models.BlackBoxModel` is one)."""

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class FilterDataset:
    """Labelled samples of one modality for training and testing an InFi filter.

    Parameters
    ----------
    modality : str
        One of :data:`edgecloud.infi.features.MODALITIES`: which feature network
        takes ``inputs``.
    inputs : numpy.ndarray
        ``(N, ...)`` float32, what the filter sees (shapes in the module table).
    outputs : numpy.ndarray
        ``(N,)`` (or ``(N, ...)`` for a vector dataset): the result per input the
        redundancy measure and the reuse labels are computed from.
    redundant : numpy.ndarray
        ``(N,)`` bool, the skip label: True where running the model was useless.
    camera : numpy.ndarray
        ``(N,)`` int64 camera id per sample.
    frame_index : numpy.ndarray
        ``(N,)`` int64: the frame ``outputs`` belongs to (a clip's last frame, an
        audio window's first frame).
    night : numpy.ndarray
        ``(N,)`` bool: the camera was in night (IR) mode at ``frame_index``.
    """

    modality: str
    inputs: FloatArray
    outputs: npt.NDArray[Any]
    redundant: BoolArray
    camera: IntArray
    frame_index: IntArray
    night: BoolArray

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(
                f"modality is {self.modality!r}; expected one of {list(MODALITIES)}"
            )
        n = len(self.inputs)
        if n == 0:
            raise ValueError("inputs is empty; expected at least one sample")
        if self.inputs.ndim < 2:
            raise ValueError(
                f"inputs has shape {self.inputs.shape}; expected (N, ...) samples"
            )
        if len(self.outputs) != n or self.outputs.ndim < 1:
            raise ValueError(
                f"outputs has shape {self.outputs.shape}; expected ({n}, ...) "
                "(one output per input)"
            )
        columns = {
            "redundant": self.redundant,
            "camera": self.camera,
            "frame_index": self.frame_index,
            "night": self.night,
        }
        for name, column in columns.items():
            if column.shape != (n,):
                raise ValueError(
                    f"{name} has shape {column.shape}; expected ({n},) (one per input)"
                )
        for name in ("redundant", "night"):
            if columns[name].dtype != np.bool_:
                raise ValueError(
                    f"{name} has dtype {columns[name].dtype}; expected bool"
                )

    def __len__(self) -> int:
        return len(self.inputs)

    def select(self, rows: npt.ArrayLike) -> FilterDataset:
        """The samples ``rows`` (a boolean mask or indices), in that order.

        Parameters
        ----------
        rows : array_like
            ``(N,)`` bool mask or integer indices; must select at least one sample.

        Returns
        -------
        FilterDataset
            A new dataset of the same modality.
        """
        index = np.asarray(rows)
        return FilterDataset(
            modality=self.modality,
            inputs=self.inputs[index],
            outputs=self.outputs[index],
            redundant=self.redundant[index],
            camera=self.camera[index],
            frame_index=self.frame_index[index],
            night=self.night[index],
        )


# ---------------------------------------------------------------------- builders
def image_dataset(
    testbed: Testbed,
    model: FrameModel,
    cameras: Sequence[int],
    every: int = 5,
    size: tuple[int, int] = MODEL_INPUT,
    measure: Redundancy | None = None,
    batch_size: int = 256,
) -> FilterDataset:
    """Decoded frames and the black box's outputs on them (InFi's image modality).

    Frames come from :func:`~edgecloud.data.testbed.samples.load_samples`, which
    caches the decoded, downscaled pictures next to the videos.

    Parameters
    ----------
    testbed : Testbed
        A generated testbed (:func:`~edgecloud.data.testbed.load_testbed`).
    model : FrameModel
        The black box ``h``: uint8 ``(B, H, W, 3)`` -> ``(B,)`` outputs.
    cameras : Sequence[int]
        Distinct camera ids of ``testbed``, at least one.
    every : int
        Keep every ``every``-th frame (``>= 1``).
    size : tuple[int, int]
        Frame ``(width, height)`` the filter and the black box see.
    measure : Redundancy | None
        The task's ``f_h``; ``None``: :func:`~edgecloud.infi.redundancy.zero_count`
        (a count of 0 is redundant).
    batch_size : int
        Frames per call of ``model``.

    Returns
    -------
    FilterDataset
        ``modality="image"``, ``inputs`` ``(N, 3, H, W)`` in ``[0, 1]``.
    """
    ids = _check_cameras(testbed, cameras)
    check_positive_int("every", every)
    _check_size(size)
    check_positive_int("batch_size", batch_size)
    samples = load_samples(testbed, ids, every=every, size=size)
    # the black box takes (N, H, W, 3); the samples are (N, 3, H, W)
    outputs = _run_model(model, samples.images.transpose(0, 2, 3, 1), batch_size)
    return _labelled(
        "image",
        _unit_float(samples.images),
        outputs,
        zero_count() if measure is None else measure,
        camera=samples.camera,
        frame_index=samples.frame_index,
        night=samples.night.astype(np.bool_),
    )


def clip_dataset(
    testbed: Testbed,
    model: FrameModel,
    cameras: Sequence[int],
    window: int = 4,
    stride: int = 10,
    size: tuple[int, int] = MODEL_INPUT,
    measure: Redundancy | None = None,
    batch_size: int = 256,
) -> FilterDataset:
    """Clips of consecutive frames labelled by the black box on their last frame.

    InFi's video modality: the filter sees the ``window`` frames up to and
    including frame ``t`` and decides on the inference of frame ``t``. Clips
    start at frames ``0, stride, 2 * stride, ...`` of each camera and end within
    the video; they overlap when ``stride < window``.

    Parameters
    ----------
    testbed : Testbed
        A generated testbed.
    model : FrameModel
        The black box ``h`` (the event detector in the thesis' video task).
    cameras : Sequence[int]
        Distinct camera ids of ``testbed``, at least one.
    window : int
        Frames per clip ``T`` (``>= 1``, at most the frames of a camera).
    stride : int
        Frames between the starts of consecutive clips (``>= 1``).
    size : tuple[int, int]
        Frame ``(width, height)``.
    measure : Redundancy | None
        The task's ``f_h``; ``None``: output 0 (the event detector's ``"none"``)
        is redundant and any other class useful, which is
        :func:`~edgecloud.infi.redundancy.zero_count` (it holds for any number
        of classes).
    batch_size : int
        Frames per call of ``model``.

    Returns
    -------
    FilterDataset
        ``modality="video"``, ``inputs`` ``(N, T, 3, H, W)`` in ``[0, 1]``;
        ``frame_index`` and ``night`` are those of each clip's last frame.
    """
    ids = _check_cameras(testbed, cameras)
    check_positive_int("window", window)
    check_positive_int("stride", stride)
    _check_size(size)
    check_positive_int("batch_size", batch_size)
    clips, camera, last, night = [], [], [], []
    for cam_id in ids:
        cam_clips, cam_last, cam_night = _camera_clips(
            testbed.camera(cam_id), window, stride, size
        )
        clips.append(cam_clips)
        camera.append(np.full(len(cam_clips), cam_id, dtype=np.int64))
        last.append(cam_last)
        night.append(cam_night)
    frames = np.concatenate(clips)  # (N, T, 3, H, W) uint8
    # the label is the black box's output on the frame the filter decides on
    outputs = _run_model(model, frames[:, -1].transpose(0, 2, 3, 1), batch_size)
    return _labelled(
        "video",
        _unit_float(frames),
        outputs,
        zero_count() if measure is None else measure,
        camera=np.concatenate(camera),
        frame_index=np.concatenate(last),
        night=np.concatenate(night),
    )


def audio_dataset(
    testbed: Testbed, cameras: Sequence[int], seconds: float = 1.0
) -> FilterDataset:
    """The cameras' audio in fixed windows, labelled with the scene's event.

    The testbed's soundscape (:mod:`edgecloud.data.testbed.audio`) follows its
    frame labels: a traffic hum scaled by the vehicle count, a crackle while a
    fire burns, a whoosh while a fast mover crosses. Window ``k`` holds the
    sound of frames ``[k * F, (k + 1) * F)`` with ``F = seconds * fps``; its
    output is the ground-truth event class (index into ``EVENTS``) most of
    those frames show, or ``0`` ("none") when none shows an event, and it is
    redundant exactly when no frame shows an event. A track decoded at another
    rate (Opus: 48 kHz) is resampled to the rate it was synthesized at
    (``SAMPLE_RATE``), so ``L`` does not depend on the codec. Windows the
    decoded track does not fully cover are left out.

    Parameters
    ----------
    testbed : Testbed
        A testbed generated with an audio track (``audio=True``, ``--audio``).
    cameras : Sequence[int]
        Distinct camera ids of ``testbed``, at least one.
    seconds : float
        Window length: a whole number of frames, at most a camera's video.

    Returns
    -------
    FilterDataset
        ``modality="audio"``, ``inputs`` ``(N, L)`` waveforms in ``[-1, 1]``
        with ``L = F * (SAMPLE_RATE // fps)``; ``frame_index`` and ``night`` are
        those of each window's first frame.
    """
    ids = _check_cameras(testbed, cameras)
    fps = testbed.config.fps
    length = check_real("seconds", seconds)
    frames_per_window = round(length * fps) if math.isfinite(length) else 0
    if frames_per_window < 1 or not math.isclose(frames_per_window, length * fps):
        raise ValueError(
            f"seconds is {seconds!r}; expected a positive multiple of 1/fps = "
            f"{1 / fps:g} s (whole frames)"
        )
    waves, outputs, camera, first, night = [], [], [], [], []
    for cam_id in ids:
        cam_waves, cam_events, cam_first, cam_night = _camera_audio(
            testbed, testbed.camera(cam_id), frames_per_window, seconds
        )
        waves.append(cam_waves)
        outputs.append(cam_events)
        camera.append(np.full(len(cam_waves), cam_id, dtype=np.int64))
        first.append(cam_first)
        night.append(cam_night)
    return _labelled(
        "audio",
        np.concatenate(waves),
        np.concatenate(outputs),
        _any_event(),
        camera=np.concatenate(camera),
        frame_index=np.concatenate(first),
        night=np.concatenate(night),
    )


def feature_map_dataset(
    features: npt.ArrayLike,
    outputs: npt.ArrayLike,
    *,
    camera: npt.ArrayLike,
    frame_index: npt.ArrayLike,
    night: npt.ArrayLike,
    measure: Redundancy | None = None,
) -> FilterDataset:
    """Vectors or feature maps the caller computed (a split model's cut layer).

    The thesis' vector modality also covers intermediate feature maps: a filter
    placed after the device part of a split model sees its activations. The
    caller computes them, typically from an :func:`image_dataset`, and passes
    that dataset's ``outputs``, ``camera``, ``frame_index`` and ``night``.

    Parameters
    ----------
    features : array_like
        ``(N, ...)`` real numbers, all finite (converted to float32).
    outputs : array_like
        ``(N,)`` or ``(N, ...)``: the black box's output per row of ``features``.
    camera, frame_index : array_like
        ``(N,)`` integers per row.
    night : array_like
        ``(N,)`` bools (or 0/1) per row.
    measure : Redundancy | None
        The task's ``f_h`` on ``outputs``; ``None``:
        :func:`~edgecloud.infi.redundancy.zero_count`.

    Returns
    -------
    FilterDataset
        ``modality="vector"``.
    """
    values: npt.NDArray[Any] = np.asarray(features)
    if values.ndim < 2 or len(values) == 0:
        raise ValueError(
            f"features has shape {values.shape}; expected (N, ...) with N >= 1 "
            "(one row per input)"
        )
    if values.dtype.kind not in "iuf":
        raise ValueError(f"features has dtype {values.dtype}; expected real numbers")
    if not np.isfinite(values).all():
        where = ", ".join(str(int(i)) for i in np.argwhere(~np.isfinite(values))[0])
        raise ValueError(f"features[{where}] is not finite; expected finite numbers")
    n = len(values)
    results: npt.NDArray[Any] = np.asarray(outputs)
    if results.ndim < 1 or len(results) != n:
        raise ValueError(
            f"outputs has shape {results.shape}; expected ({n}, ...) "
            "(one output per row of features)"
        )
    return _labelled(
        "vector",
        values.astype(np.float32),
        results,
        zero_count() if measure is None else measure,
        camera=_int_column("camera", camera, n),
        frame_index=_int_column("frame_index", frame_index, n),
        night=_bool_column("night", night, n),
    )


# ---------------------------------------------------------------------- splits
def split_by_camera(dataset: FilterDataset, cameras: Sequence[int]) -> FilterDataset:
    """The samples of ``cameras`` (e.g. the training or the held-out domain).

    Parameters
    ----------
    dataset : FilterDataset
        Any dataset of this module.
    cameras : Sequence[int]
        Distinct camera ids present in ``dataset``, at least one.

    Returns
    -------
    FilterDataset
        Those cameras' samples, in the dataset's order.
    """
    present = sorted(int(c) for c in np.unique(dataset.camera))
    ids = _check_ids(cameras, present, "the dataset's cameras")
    return dataset.select(np.isin(dataset.camera, ids))


def split_by_time(dataset: FilterDataset, night: bool) -> FilterDataset:
    """The night (IR) or the day samples (the day -> night shift experiment).

    Parameters
    ----------
    dataset : FilterDataset
        Any dataset of this module.
    night : bool
        True: the night samples; False: the day samples.

    Returns
    -------
    FilterDataset
        Those samples, in the dataset's order.
    """
    if not isinstance(night, bool | np.bool_):
        raise ValueError(f"night is {night!r}; expected True or False")
    mask = dataset.night == bool(night)
    if not mask.any():
        part = "night" if night else "day"
        raise ValueError(
            f"dataset has no {part} samples; expected at least one for night={night}"
        )
    return dataset.select(mask)


# ---------------------------------------------------------------------- per camera
def _camera_clips(
    cam: CameraVideo, window: int, stride: int, size: tuple[int, int]
) -> tuple[npt.NDArray[np.uint8], IntArray, BoolArray]:
    """One camera's clips ``(n, T, 3, H, W)`` uint8, last frame indices, night."""
    labels = cam.labels
    num_frames = len(labels)
    if window > num_frames:
        raise ValueError(
            f"window is {window}; expected at most the {num_frames} frames of "
            f"camera {cam.camera_id}"
        )
    starts = np.arange(0, num_frames - window + 1, stride)
    members = starts[:, None] + np.arange(window)  # (n, T) frame indices
    needed = set(members.ravel().tolist())
    # every frame is decoded (they are references); only the clips' are kept
    kept = {
        frame.frame_index: frame.image.transpose(2, 0, 1)
        for frame in cam.frames(size=size)
        if frame.frame_index in needed
    }
    missing = sorted(needed - kept.keys())
    if missing:
        raise ValueError(
            f"{cam.path}: frame {missing[0]} was not decoded; expected all "
            f"{num_frames} labelled frames (regenerate the testbed)"
        )
    order = sorted(kept)
    stack = np.stack([kept[i] for i in order])  # (M, 3, H, W)
    position = np.searchsorted(order, members)  # (n, T) rows of stack
    last = members[:, -1].astype(np.int64)
    night = labels.column("night")[last].astype(np.bool_)
    return stack[position], last, night


def _camera_audio(
    testbed: Testbed, cam: CameraVideo, frames_per_window: int, seconds: float
) -> tuple[FloatArray, IntArray, IntArray, BoolArray]:
    """One camera's windows ``(n, L)``, their events, first frames and night flags."""
    waveform, rate = cam.audio()
    if rate == 0 or waveform.size == 0:
        raise ValueError(
            f"testbed {testbed.root} has no audio track (camera {cam.camera_id}); "
            "expected one generated with audio=True (--audio)"
        )
    if rate != SAMPLE_RATE:
        common = math.gcd(rate, SAMPLE_RATE)
        waveform = resample_poly(
            waveform, SAMPLE_RATE // common, rate // common
        ).astype(np.float32)
    # the synthesizer gives each frame SAMPLE_RATE // fps samples, from sample 0
    per_frame = SAMPLE_RATE // testbed.config.fps
    length = frames_per_window * per_frame
    labels = cam.labels
    starts = np.arange(0, len(labels) - frames_per_window + 1, frames_per_window)
    starts = starts[starts * per_frame + length <= len(waveform)]
    if len(starts) == 0:
        raise ValueError(
            f"seconds is {seconds!r}; expected at most the "
            f"{len(waveform) / SAMPLE_RATE:g} s of audio of camera {cam.camera_id}"
        )
    offsets = starts[:, None] * per_frame + np.arange(length)  # (n, L)
    events = labels.class_column("event", EVENTS)
    window_events = np.array(
        [_window_event(events[s : s + frames_per_window]) for s in starts],
        dtype=np.int64,
    )
    night = labels.column("night")[starts].astype(np.bool_)
    return waveform[offsets], window_events, starts.astype(np.int64), night


def _window_event(events: IntArray) -> int:
    """The event most frames of a window show; 0 ("none") only if none shows one."""
    counts = np.bincount(events, minlength=len(EVENTS))
    counts[0] = 0  # a short event in a long window is still heard
    return int(np.argmax(counts)) if counts.any() else 0


# ---------------------------------------------------------------------- helpers
def _any_event() -> Redundancy:
    """Class 0 (``EVENTS[0]``, "none") is redundant, every event class useful."""
    return class_subset(range(1, len(EVENTS)))


def _labelled(
    modality: str,
    inputs: FloatArray,
    outputs: npt.NDArray[Any],
    measure: Redundancy,
    *,
    camera: IntArray,
    frame_index: IntArray,
    night: BoolArray,
) -> FilterDataset:
    """The dataset with ``redundant = measure(outputs)`` (its result checked)."""
    redundant = np.asarray(measure(outputs))
    if redundant.shape != (len(outputs),) or redundant.dtype != np.bool_:
        raise ValueError(
            f"measure returned {redundant.dtype} of shape {redundant.shape}; "
            f"expected bool of shape ({len(outputs)},)"
        )
    return FilterDataset(
        modality=modality,
        inputs=inputs,
        outputs=outputs,
        redundant=redundant,
        camera=camera,
        frame_index=frame_index,
        night=night,
    )


def _run_model(
    model: FrameModel, frames: npt.NDArray[np.uint8], batch_size: int
) -> npt.NDArray[Any]:
    """``model`` on ``(N, H, W, 3)`` frames in batches; one output per frame."""
    chunks = []
    for start in range(0, len(frames), batch_size):
        batch = np.ascontiguousarray(frames[start : start + batch_size])
        out: npt.NDArray[Any] = np.asarray(model(batch))
        if out.shape != (len(batch),):
            raise ValueError(
                f"model returned shape {out.shape} on {len(batch)} frames; "
                f"expected ({len(batch)},) (one output per frame)"
            )
        chunks.append(out)
    return np.concatenate(chunks)


def _unit_float(pixels: npt.NDArray[np.uint8]) -> FloatArray:
    """uint8 pixels as float32 in ``[0, 1]`` (same shape)."""
    values = pixels.astype(np.float32)
    values /= 255.0  # in place: a clip array can be large
    return values


def _check_cameras(testbed: Testbed, cameras: Sequence[int]) -> tuple[int, ...]:
    """``cameras`` as distinct ids of ``testbed``, at least one."""
    known = [cam.camera_id for cam in testbed.cameras]
    return _check_ids(cameras, known, f"the cameras of testbed {testbed.root}")


def _check_ids(cameras: Sequence[int], known: list[int], where: str) -> tuple[int, ...]:
    """``cameras`` as a tuple of distinct ids among ``known``, at least one."""
    ids = list(cameras)
    if not ids:
        raise ValueError(f"cameras is {cameras!r}; expected at least one camera id")
    for cam in ids:
        if (
            isinstance(cam, bool)
            or not isinstance(cam, int | np.integer)
            or int(cam) not in known
        ):
            raise ValueError(
                f"cameras contains {cam!r}; expected ids among {known} ({where})"
            )
    seen: set[int] = set()
    for cam in ids:
        if int(cam) in seen:
            raise ValueError(f"cameras contains {cam} twice; expected distinct ids")
        seen.add(int(cam))
    return tuple(int(cam) for cam in ids)


def _check_size(size: tuple[int, int]) -> None:
    """``size`` must be ``(width, height)``, two positive integers."""
    if (
        not isinstance(size, tuple)
        or len(size) != 2
        or any(
            isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1
            for v in size
        )
    ):
        raise ValueError(f"size is {size!r}; expected (width, height) ints >= 1")


def _int_column(name: str, values: npt.ArrayLike, n: int) -> IntArray:
    """``values`` as an ``(n,)`` int64 column."""
    column: npt.NDArray[Any] = np.asarray(values)
    if column.shape != (n,) or (column.size and column.dtype.kind not in "iu"):
        raise ValueError(
            f"{name} is {column.dtype} of shape {column.shape}; expected ({n},) "
            "integers (one per row of features)"
        )
    return column.astype(np.int64)


def _bool_column(name: str, values: npt.ArrayLike, n: int) -> BoolArray:
    """``values`` as an ``(n,)`` bool column (0/1 integers accepted)."""
    column: npt.NDArray[Any] = np.asarray(values)
    if column.shape != (n,) or not (
        column.dtype == np.bool_
        or (column.dtype.kind in "iu" and np.isin(column, (0, 1)).all())
    ):
        raise ValueError(
            f"{name} is {column.dtype} of shape {column.shape}; expected ({n},) "
            "bools (one per row of features)"
        )
    return column.astype(np.bool_)
