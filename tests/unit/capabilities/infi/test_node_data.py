"""A node's time split and test report on fabricated datasets and scores."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from edgecloud.capabilities.infi.node_data import (
    NodeParts,
    evaluate_filter,
    resize_inputs,
    split_in_time,
)
from edgecloud.infi.datasets import FilterDataset


def _dataset(
    cameras: list[int], frames: int, redundant: list[bool] | None = None
) -> FilterDataset:
    """``frames`` samples per camera, shuffled: the split must sort by time."""
    n = len(cameras) * frames
    order = np.random.default_rng(0).permutation(n)
    camera = np.repeat(cameras, frames)[order]
    frame_index = np.tile(np.arange(frames) * 5, len(cameras))[order]
    labels = np.zeros(n, bool) if redundant is None else np.asarray(redundant)
    return FilterDataset(
        modality="image",
        inputs=np.zeros((n, 3, 12, 16), np.float32),
        outputs=np.zeros(n, np.int64),
        redundant=labels,
        camera=camera.astype(np.int64),
        frame_index=frame_index.astype(np.int64),
        night=np.zeros(n, bool),
    )


class _Scores:
    """Stands in for an InputFilter: a fixed skip probability per input row."""

    def __init__(self, by_frame: dict[int, float]) -> None:
        self.by_frame = by_frame

    def predict_skip(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        # the test rows carry their frame index in pixel (0, 0, 0)
        rows = [self.by_frame[int(i)] for i in inputs[:, 0, 0, 0]]
        return np.asarray(rows, np.float32)[:, None]


def _parts(
    validation: list[tuple[float, bool]], test: list[tuple[float, bool]]
) -> tuple[NodeParts, _Scores]:
    """Parts whose rows are (skip probability, truly redundant)."""
    rows = validation + test
    data = _dataset([0], len(rows))
    data = data.select(np.argsort(data.frame_index))  # row i: frame i
    data.redundant[:] = [r for _, r in rows]
    data.inputs[:, 0, 0, 0] = np.arange(len(rows))
    scores = _Scores({i: p for i, (p, _) in enumerate(rows)})
    cut = len(validation)
    parts = NodeParts(
        train=data.select(np.arange(cut)),
        validation=data.select(np.arange(cut)),
        test=data.select(np.arange(cut, len(rows))),
    )
    return parts, scores


def test_each_camera_trains_on_its_past_and_tests_on_its_future() -> None:
    # Prepare: 2 cameras x 20 frames in shuffled order
    data = _dataset([3, 5], 20)

    # Execute
    parts = split_in_time(data, train_fraction=0.5, validation_fraction=0.2)

    # Assert: per camera frames 0..7 fit, 8..9 validate, 10..19 test
    for camera in (3, 5):
        fit = sorted(parts.train.frame_index[parts.train.camera == camera] // 5)
        val = sorted(parts.validation.frame_index[parts.validation.camera == camera])
        test = parts.test.frame_index[parts.test.camera == camera] // 5
        assert fit == list(range(8))
        assert [v // 5 for v in val] == [8, 9]
        assert sorted(test) == list(range(10, 20))
    assert (len(parts.train), len(parts.validation), len(parts.test)) == (16, 4, 20)


def test_too_few_frames_for_the_fractions_fail_with_the_sizes() -> None:
    # Prepare: one frame per camera trains nothing after the validation tail
    data = _dataset([0, 1], 2)

    # Execute / Assert
    with pytest.raises(ValueError, match="expected at least one frame in each"):
        split_in_time(data, train_fraction=0.5, validation_fraction=0.2)


def test_inputs_are_area_resized_for_the_filter_only() -> None:
    # Prepare
    data = _dataset([0], 4)
    data.inputs[:] = 0.5

    # Execute
    small = resize_inputs(data, (8, 6))

    # Assert: (N, 3, h, w), labels untouched, the same size is a no-op
    assert small.inputs.shape == (4, 3, 6, 8)
    np.testing.assert_allclose(small.inputs, 0.5)
    assert np.array_equal(small.redundant, data.redundant)
    assert resize_inputs(data, (16, 12)) is data


def test_the_report_uses_the_validation_threshold_on_the_test_part() -> None:
    # Prepare: validation: skipping p >= 0.8 keeps 9/10 correct (target 0.9)
    validation = [(0.9, True)] * 4 + [(0.8, False)] + [(0.1, False)] * 5
    test = [(0.95, True), (0.85, False), (0.5, True), (0.2, False)]
    parts, scores = _parts(validation, test)

    # Execute
    report = evaluate_filter(scores, parts, target_accuracy=0.9)  # type: ignore[arg-type]

    # Assert: 2 of 4 test inputs skipped, one wrongly; r_N = 2/4
    assert report.threshold == pytest.approx(0.8)
    assert report.validation_filter_rate == pytest.approx(0.5)
    assert report.validation_accuracy == pytest.approx(0.9)
    assert report.filter_rate == pytest.approx(0.5)
    assert report.accuracy == pytest.approx(0.75)
    assert report.redundant_share == pytest.approx(0.5)
    assert report.optimum_filter_rate == pytest.approx(1 - 0.9 + 0.5)
    assert report.num_test == 4


def test_a_filter_that_cannot_reach_the_target_skips_nothing() -> None:
    # Prepare: no validation input is redundant; skipping one loses 1/5 > 0.1
    validation = [(0.9, False)] * 5
    test = [(0.99, True), (0.3, False)]
    parts, scores = _parts(validation, test)

    # Execute
    report = evaluate_filter(scores, parts, target_accuracy=0.9)  # type: ignore[arg-type]

    # Assert: the black box runs on everything: rate 0, accuracy 1
    assert report.threshold == float("inf")
    assert (report.filter_rate, report.accuracy) == (0.0, 1.0)
    assert report.validation_filter_rate == 0.0
