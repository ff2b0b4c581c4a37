"""InFi datasets from a tiny generated testbed: images, clips, audio, feature maps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edgecloud.data.testbed import EVENTS, Testbed, generate_testbed, preset
from edgecloud.data.testbed.audio import SAMPLE_RATE, synthesize_audio
from edgecloud.data.testbed.samples import MODEL_INPUT
from edgecloud.infi.datasets import (
    FilterDataset,
    audio_dataset,
    clip_dataset,
    feature_map_dataset,
    image_dataset,
    split_by_camera,
    split_by_time,
)
from edgecloud.infi.redundancy import class_subset, zero_count

# 6 s at 10 fps: 60 frames per camera, night at both ends of the simulated day
FRAMES = 60


def bright_pixels(frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Stand-in black box: (N, H, W, 3) -> (N,) classes 0-3 of bright-pixel counts.

    Day frames of the tiny testbed have a few hundred pixels above 180 in every
    channel, night (IR) frames under 200: both classes 0 (redundant) and > 0.
    """
    bright = (frames.min(axis=-1) > 180).sum(axis=(1, 2))
    counts: npt.NDArray[np.int64] = np.minimum(bright // 200, 3).astype(np.int64)
    return counts


def as_frames(inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Filter inputs (N, 3, H, W) in [0, 1] back to black-box frames (N, H, W, 3)."""
    pixels = np.round(inputs * 255.0).astype(np.uint8)
    return pixels.transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Testbed:
    """2 cameras (1 held out) x 6 s at 160x120, H.264 + AAC audio."""
    root = tmp_path_factory.mktemp("infi") / "testbed"
    cfg = preset("tiny", num_cameras=2, held_out_cameras=1, duration_s=6.0, audio=True)
    testbed, _ = generate_testbed(cfg, root, workers=1, progress=False)
    return testbed


@pytest.fixture(scope="module")
def images(testbed: Testbed) -> FilterDataset:
    """Every 5th frame of both cameras, labelled by the stand-in black box."""
    return image_dataset(testbed, bright_pixels, [0, 1], every=5)


def test_image_dataset_shapes_and_labels_follow_the_frames(
    testbed: Testbed, images: FilterDataset
) -> None:
    # Prepare: the frames and labels the testbed readers give for camera 1
    cam = testbed.camera(1)
    decoded = np.stack([f.image for f in cam.frames(size=MODEL_INPUT, every=5)])
    night = cam.labels.column("night")[::5].astype(bool)

    # Execute
    ours = split_by_camera(images, [1])

    # Assert: (N, 3, H, W) float32 in [0, 1], rows aligned with frame indices
    width, height = MODEL_INPUT
    assert images.modality == "image"
    assert images.inputs.shape == (24, 3, height, width)
    assert images.inputs.dtype == np.float32
    assert images.inputs.min() >= 0.0 and images.inputs.max() <= 1.0
    assert images.camera.tolist() == [0] * 12 + [1] * 12
    assert images.frame_index.tolist() == list(range(0, FRAMES, 5)) * 2
    assert np.array_equal(as_frames(ours.inputs), decoded)
    assert ours.night.tolist() == night.tolist()
    # outputs are the black box's on each row's own frame
    assert np.array_equal(images.outputs, bright_pixels(as_frames(images.inputs)))
    assert np.array_equal(ours.outputs, bright_pixels(decoded))


def test_image_redundancy_labels_equal_the_measure_on_the_outputs(
    testbed: Testbed, images: FilterDataset
) -> None:
    # Prepare: only class 3 is useful; odd batches that do not divide N = 24
    useful = class_subset([3])

    # Execute
    custom = image_dataset(
        testbed, bright_pixels, [0, 1], every=5, measure=useful, batch_size=7
    )

    # Assert: the default is zero_count; both labels occur in the tiny testbed
    assert images.redundant.tolist() == zero_count()(images.outputs).tolist()
    assert 0 < images.redundant.sum() < len(images)
    assert np.array_equal(custom.outputs, images.outputs)
    assert custom.redundant.tolist() == (images.outputs != 3).tolist()


def test_clip_dataset_windows_end_on_the_labelled_frame(testbed: Testbed) -> None:
    # Prepare: every frame, to look the clips' frames up by (camera, index)
    frames = image_dataset(testbed, bright_pixels, [0, 1], every=1)
    pairs = zip(frames.camera.tolist(), frames.frame_index.tolist(), strict=True)
    row = {pair: r for r, pair in enumerate(pairs)}

    # Execute: starts 0, 10, ..., 50 per camera; overlapping ones with stride 2
    clips = clip_dataset(testbed, bright_pixels, [0, 1], window=4, stride=10)
    overlapping = clip_dataset(testbed, bright_pixels, [1], window=4, stride=2)

    # Assert: (N, T, 3, H, W); each clip holds frames t-3 .. t, labelled by t
    width, height = MODEL_INPUT
    assert clips.modality == "video"
    assert clips.inputs.shape == (12, 4, 3, height, width)
    assert clips.frame_index.tolist() == list(range(3, FRAMES, 10)) * 2
    for k, (cam, last) in enumerate(zip(clips.camera, clips.frame_index, strict=True)):
        rows = [row[int(cam), int(last) - 3 + t] for t in range(4)]
        assert np.array_equal(clips.inputs[k], frames.inputs[rows])
        assert clips.night[k] == frames.night[rows[-1]]
    assert np.array_equal(clips.outputs, bright_pixels(as_frames(clips.inputs[:, -1])))
    # default measure: class 0 (the event detector's "none") is redundant, any
    # other class useful (the stand-in has 4)
    assert clips.redundant.tolist() == (clips.outputs == 0).tolist()
    assert 0 < clips.redundant.sum() < len(clips)
    assert overlapping.frame_index.tolist() == list(range(3, FRAMES, 2))


def test_audio_windows_align_with_frames_and_events(testbed: Testbed) -> None:
    # Prepare: camera 1 shows a fast mover in frames 38-51 (seeded scene)
    cam = testbed.camera(1)
    events = cam.labels.class_column("event", EVENTS)
    fast = EVENTS.index("fast-mover")
    cfg = testbed.config
    sound = synthesize_audio(cam.labels.frames, cfg.fps, cfg.seed, 1)

    # Execute
    audio = audio_dataset(testbed, [0, 1], seconds=1.0)
    halves = audio_dataset(testbed, [1], seconds=0.5)

    # Assert: (N, L) windows of 10 frames, labelled with their frames' event
    assert np.flatnonzero(events).tolist() == list(range(38, 52))
    assert audio.modality == "audio"
    assert audio.inputs.shape == (12, SAMPLE_RATE)
    assert audio.frame_index.tolist() == list(range(0, FRAMES, 10)) * 2
    assert audio.outputs.tolist() == [0] * 6 + [0, 0, 0, fast, fast, fast]
    assert audio.redundant.tolist() == (audio.outputs == 0).tolist()
    assert audio.night.tolist() == (
        testbed.camera(0).labels.column("night")[::10].astype(bool).tolist()
        + cam.labels.column("night")[::10].astype(bool).tolist()
    )
    # window k is the sound of frames 10k .. 10k + 9: it follows the soundscape
    ours = split_by_camera(audio, [1]).inputs.ravel()
    assert np.corrcoef(ours, sound[: ours.size])[0, 1] > 0.9
    rms = np.sqrt(np.mean(audio.inputs[6:] ** 2, axis=1))
    assert rms[4] > 4 * rms[:2].max()  # the whoosh window vs. the quiet ones
    assert halves.inputs.shape == (12, SAMPLE_RATE // 2)
    # windows of 5 frames: 7 (frames 35-39) to 10 (frames 50-54) hear the event
    assert halves.outputs.tolist() == [0] * 7 + [fast] * 4 + [0]


def test_an_opus_track_is_resampled_to_the_synthesis_rate(tmp_path: Path) -> None:
    # Prepare: VP9 + Opus, which decodes at 48 kHz
    cfg = preset(
        "tiny",
        num_cameras=1,
        held_out_cameras=0,
        duration_s=2.0,
        audio=True,
        codec="vp9",
    )
    testbed, _ = generate_testbed(cfg, tmp_path / "vp9", workers=1, progress=False)
    cam = testbed.camera(0)
    sound = synthesize_audio(cam.labels.frames, cfg.fps, cfg.seed, 0)

    # Execute
    audio = audio_dataset(testbed, [0])

    # Assert: L is 1 s at the synthesis rate, aligned with the soundscape
    assert audio.inputs.shape == (2, SAMPLE_RATE)
    assert np.corrcoef(audio.inputs.ravel(), sound)[0, 1] > 0.9


def test_a_testbed_without_audio_is_a_clear_error(tmp_path: Path) -> None:
    # Prepare: generated without an audio track
    cfg = preset("tiny", num_cameras=1, held_out_cameras=0, duration_s=1.0)
    testbed, _ = generate_testbed(cfg, tmp_path / "silent", workers=1, progress=False)

    # Execute / Assert
    with pytest.raises(ValueError, match=r"has no audio track \(camera 0\); expected"):
        audio_dataset(testbed, [0])


def test_feature_map_dataset_keeps_rows_aligned(images: FilterDataset) -> None:
    # Prepare: a stand-in cut layer, per-channel means (N, 3)
    features = images.inputs.mean(axis=(2, 3))

    # Execute
    vectors = feature_map_dataset(
        features,
        images.outputs,
        camera=images.camera,
        frame_index=images.frame_index,
        night=images.night.astype(int),
    )

    # Assert
    assert vectors.modality == "vector"
    assert vectors.inputs.shape == (len(images), 3)
    assert vectors.inputs.dtype == np.float32
    assert np.array_equal(vectors.redundant, images.redundant)
    assert np.array_equal(vectors.night, images.night)
    assert vectors.frame_index.tolist() == images.frame_index.tolist()


def test_camera_and_time_splits_partition_the_dataset(images: FilterDataset) -> None:
    # Execute
    train = split_by_camera(images, [0])
    held_out = split_by_camera(images, [1])
    day = split_by_time(images, night=False)
    night = split_by_time(images, night=True)

    # Assert: each part keeps its rows (inputs, labels) in the dataset's order
    assert set(train.camera.tolist()) == {0} and set(held_out.camera.tolist()) == {1}
    assert len(train) + len(held_out) == len(images)
    assert np.array_equal(held_out.inputs, images.inputs[images.camera == 1])
    assert not day.night.any() and night.night.all()
    assert len(day) + len(night) == len(images)
    assert np.array_equal(night.outputs, images.outputs[images.night])
    assert night.frame_index.tolist() == images.frame_index[images.night].tolist()


def two_outputs(frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """A black box with (N, 2) outputs (like the sequence reader's slots)."""
    return np.zeros((len(frames), 2), dtype=np.int64)


def one_short(frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """A black box that drops the last frame's output."""
    return np.zeros(len(frames) - 1, dtype=np.int64)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        # no camera at all: nothing to label
        (lambda tb: image_dataset(tb, bright_pixels, []), r"cameras is \[\]; expected"),
        # camera 5 is not in a 2-camera testbed
        (
            lambda tb: image_dataset(tb, bright_pixels, [0, 5]),
            r"cameras contains 5; expected ids among \[0, 1\]",
        ),
        # a camera twice would duplicate its samples across splits
        (
            lambda tb: clip_dataset(tb, bright_pixels, [1, 1]),
            r"cameras contains 1 twice; expected distinct ids",
        ),
        # a camera id as a string
        (
            lambda tb: audio_dataset(tb, ["0"]),
            r"cameras contains '0'; expected ids among",
        ),
        # every 0th frame is meaningless
        (
            lambda tb: image_dataset(tb, bright_pixels, [0], every=0),
            r"every is 0; expected a positive integer",
        ),
        # a frame size needs two positive sides
        (
            lambda tb: image_dataset(tb, bright_pixels, [0], size=(0, 120)),
            r"size is \(0, 120\); expected \(width, height\)",
        ),
        # per-slot outputs: the measures need one output per frame
        (
            lambda tb: image_dataset(tb, two_outputs, [0]),
            r"model returned shape \(12, 2\) on 12 frames; expected \(12,\)",
        ),
        # fewer outputs than frames would misalign every label after the gap
        (
            lambda tb: clip_dataset(tb, one_short, [0]),
            r"model returned shape \(5,\) on 6 frames; expected \(6,\)",
        ),
        # a clip longer than the 60-frame video
        (
            lambda tb: clip_dataset(tb, bright_pixels, [0], window=61),
            r"window is 61; expected at most the 60 frames of camera 0",
        ),
        # consecutive clips must move forward
        (
            lambda tb: clip_dataset(tb, bright_pixels, [0], stride=0),
            r"stride is 0; expected a positive integer",
        ),
        # 1.5 frames at 10 fps: windows must hold whole frames
        (
            lambda tb: audio_dataset(tb, [0], seconds=0.15),
            r"seconds is 0.15; expected a positive multiple of 1/fps = 0.1 s",
        ),
        # an empty window
        (
            lambda tb: audio_dataset(tb, [0], seconds=0.0),
            r"seconds is 0.0; expected a positive multiple",
        ),
        # longer than the camera's 6 s of audio: no window fits
        (
            lambda tb: audio_dataset(tb, [0], seconds=7.0),
            r"seconds is 7.0; expected at most the 6.* s of audio of camera 0",
        ),
    ],
    ids=[
        "no-cameras",
        "unknown-camera",
        "duplicate-camera",
        "camera-as-string",
        "every-0",
        "zero-width",
        "per-slot-outputs",
        "missing-output",
        "window-too-long",
        "stride-0",
        "partial-frames",
        "zero-seconds",
        "longer-than-audio",
    ],
)
def test_bad_builder_arguments_are_one_line_errors(
    testbed: Testbed, build: Callable[[Testbed], FilterDataset], match: str
) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match) as error:
        build(testbed)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        # one feature per sample must still be (N, 1), not (N,)
        (
            lambda ds: feature_map_dataset(
                ds.outputs.astype(float),
                ds.outputs,
                camera=ds.camera,
                frame_index=ds.frame_index,
                night=ds.night,
            ),
            r"features has shape \(24,\); expected \(N, ...\)",
        ),
        # a NaN activation would poison the filter's training
        (
            lambda ds: feature_map_dataset(
                np.full((24, 2), np.nan),
                ds.outputs,
                camera=ds.camera,
                frame_index=ds.frame_index,
                night=ds.night,
            ),
            r"features\[0, 0\] is not finite",
        ),
        # outputs of another set of inputs
        (
            lambda ds: feature_map_dataset(
                ds.inputs.mean(axis=(2, 3)),
                ds.outputs[:-1],
                camera=ds.camera,
                frame_index=ds.frame_index,
                night=ds.night,
            ),
            r"outputs has shape \(23,\); expected \(24, ...\)",
        ),
        # a camera column of the wrong length
        (
            lambda ds: feature_map_dataset(
                ds.inputs.mean(axis=(2, 3)),
                ds.outputs,
                camera=ds.camera[:3],
                frame_index=ds.frame_index,
                night=ds.night,
            ),
            r"camera is int64 of shape \(3,\); expected \(24,\) integers",
        ),
        # a night flag that is neither a bool nor 0/1
        (
            lambda ds: feature_map_dataset(
                ds.inputs.mean(axis=(2, 3)),
                ds.outputs,
                camera=ds.camera,
                frame_index=ds.frame_index,
                night=np.full(24, 2),
            ),
            r"night is int64 of shape \(24,\); expected \(24,\) bools",
        ),
        # camera 7 is not in the dataset
        (
            lambda ds: split_by_camera(ds, [7]),
            r"cameras contains 7; expected ids among \[0, 1\] \(the dataset's",
        ),
        # the day part of a night-only dataset is empty
        (
            lambda ds: split_by_time(split_by_time(ds, night=True), night=False),
            r"dataset has no day samples; expected at least one for night=False",
        ),
        # a string is not a time of day
        (
            lambda ds: split_by_time(ds, night="yes"),
            r"night is 'yes'; expected True or False",
        ),
    ],
    ids=[
        "one-dimensional-features",
        "nan-feature",
        "outputs-too-short",
        "camera-too-short",
        "night-not-a-flag",
        "split-unknown-camera",
        "split-no-day",
        "night-as-string",
    ],
)
def test_bad_dataset_arguments_are_one_line_errors(
    images: FilterDataset, build: Callable[[FilterDataset], FilterDataset], match: str
) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match) as error:
        build(images)
    assert "\n" not in str(error.value)
