"""Scene simulation and rendering: determinism, labels that match the masks."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from edgecloud.data.testbed.config import TestbedConfig, preset
from edgecloud.data.testbed.labels import (
    FAST_MOVER,
    FIRE,
    VISIBLE_SHARE,
    traffic_state,
)
from edgecloud.data.testbed.render import MASK_ALPHA
from edgecloud.data.testbed.scene import CameraScene, RenderedFrame, activity


def _frames(cfg: TestbedConfig, camera: int = 0) -> list[RenderedFrame]:
    return list(CameraScene(cfg, camera).frames())


@pytest.fixture(scope="module")
def tiny_frames() -> list[RenderedFrame]:
    return _frames(preset("tiny", shake=True))


def test_same_seed_same_frames_and_labels_other_seed_differs() -> None:
    # Prepare
    cfg = preset("tiny", duration_s=6.0)

    # Execute
    first, second = _frames(cfg), _frames(cfg)
    other = _frames(preset("tiny", duration_s=6.0, seed=1))

    # Assert
    assert [f.label for f in first] == [f.label for f in second]
    assert all(
        np.array_equal(a.image, b.image) for a, b in zip(first, second, strict=True)
    )
    assert any(
        not np.array_equal(a.image, b.image) for a, b in zip(first, other, strict=True)
    )


def test_cameras_differ_in_background_and_profile() -> None:
    cfg = preset("tiny", duration_s=1.0)
    a, b = CameraScene(cfg, 0), CameraScene(cfg, 1)
    assert a.profile != b.profile
    assert not np.array_equal(a.frames().__next__().image, b.frames().__next__().image)


def test_labels_match_the_rendered_object_masks(
    tiny_frames: list[RenderedFrame],
) -> None:
    # Prepare: every frame of a tiny clip with shake, events and night
    checked = 0
    for frame in tiny_frames:
        ids = frame.ids
        # Assert: each box is the tight box of that object's mask pixels
        for box in frame.objects:
            ys, xs = np.nonzero(ids == box.object_id)
            assert len(ys) == box.visible_pixels > 0
            assert (box.x0, box.y0, box.x1, box.y1) == (
                xs.min(),
                ys.min(),
                xs.max() + 1,
                ys.max() + 1,
            )
            checked += 1
        # ... and no object is drawn that is not in the labels
        drawn = set(np.unique(ids).tolist()) - {0}
        assert drawn == {b.object_id for b in frame.objects}
        # Counts are exactly the objects visible enough to count
        counted = [
            b
            for b in frame.objects
            if b.visible_pixels >= VISIBLE_SHARE * b.full_pixels
        ]
        kinds = Counter(b.kind for b in counted)
        label = frame.label
        assert label.persons == kinds["person"]
        assert (
            label.vehicles == kinds["car"] + kinds["truck"] == label.cars + label.trucks
        )
        assert label.traffic == traffic_state(label.vehicles)
        assert len(label.sequence) == label.persons + label.vehicles
        assert (label.event == "fire") == (kinds[FIRE] > 0)
        if kinds[FAST_MOVER] and not kinds[FIRE]:
            assert label.event == "fast-mover"
    assert checked > 500


def test_object_pixels_are_really_drawn(tiny_frames: list[RenderedFrame]) -> None:
    # Prepare: the scene rendered with no objects is the background (plus noise)
    cfg = preset("tiny", shake=True)
    scene = CameraScene(cfg, 0)
    differences = []
    for frame in tiny_frames[::10]:
        if frame.label.night or not frame.objects:
            continue
        dx, dy, m = frame.label.shake_dx, frame.label.shake_dy, scene._margin
        background = scene._day_bg[
            m + dy : m + dy + cfg.height, m + dx : m + dx + cfg.width
        ]
        mask = frame.ids > 0
        diff = np.abs(frame.image.astype(np.float32) - background).mean(axis=2)
        # Assert: object pixels differ from the background far more than noise does
        differences.append((diff[mask].mean(), diff[~mask].mean()))
    assert differences
    assert all(inside > 3 * outside for inside, outside in differences)
    assert MASK_ALPHA == 0.5


def test_night_frames_are_grayscale_day_frames_colour(
    tiny_frames: list[RenderedFrame],
) -> None:
    night = [f for f in tiny_frames if f.label.night]
    day = [f for f in tiny_frames if not f.label.night]
    assert night and day
    for f in night[:20]:
        assert np.array_equal(f.image[..., 0], f.image[..., 1])
        assert np.array_equal(f.image[..., 1], f.image[..., 2])
    assert all(
        np.abs(f.image[..., 0].astype(int) - f.image[..., 2]).mean() > 5
        for f in day[:20]
    )
    # IR frames are darker and noisier on average: a real distribution shift
    assert (
        np.mean([f.image.mean() for f in night])
        < np.mean([f.image.mean() for f in day]) - 30
    )


def test_events_shake_and_sequence_order(tiny_frames: list[RenderedFrame]) -> None:
    events = Counter(f.label.event for f in tiny_frames)
    assert events["fire"] > 0 and events["fast-mover"] > 0
    shakes = {(f.label.shake_dx, f.label.shake_dy) for f in tiny_frames}
    assert len(shakes) > 3
    margin = max(1, round(3 * preset("tiny").scale))
    assert all(abs(dx) <= margin and abs(dy) <= margin for dx, dy in shakes)
    # Sequence letters are ordered by the boxes' centres, left to right
    for f in itertools.islice(
        (f for f in tiny_frames if len(f.label.sequence) > 2), 20
    ):
        boxes = sorted(
            (
                b
                for b in f.objects
                if b.kind in ("person", "car", "truck")
                and b.visible_pixels >= VISIBLE_SHARE * b.full_pixels
            ),
            key=lambda b: (b.x0 + b.x1, b.object_id),
        )
        assert f.label.sequence == "".join(b.kind[0].upper() for b in boxes)


def test_activity_has_morning_and_evening_peaks() -> None:
    hours = np.arange(0, 24, 0.25)
    levels = np.array([activity(h) for h in hours])
    assert 7.5 <= hours[np.argmax(levels[hours < 12])] <= 8.5
    assert 16.5 <= hours[12 * 4 + np.argmax(levels[hours >= 12])] <= 18.5
    assert levels.min() > 0.2 and levels.max() > 1.4
    assert activity(3.0) < activity(13.0) < activity(8.0)


def test_traffic_state_thresholds() -> None:
    assert [traffic_state(n) for n in range(8)] == [
        "free",
        "free",
        "free",
        "busy",
        "busy",
        "busy",
        "jammed",
        "jammed",
    ]
