"""Baselines: Reducto replay, FoggyCache's LSH + H-kNN, FilterForward, bad input."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edgecloud.infi.baselines import (
    FilterForward,
    FoggyCache,
    LSHCache,
    Reducto,
    frame_differences,
    low_level_features,
)
from edgecloud.infi.thresholds import (
    choose_reuse_threshold,
    choose_skip_threshold,
    choose_threshold,
    reuse_evaluation,
)

GRID = np.linspace(0.0, 1.0, 101)  # the thesis sweeps thresholds in steps of 0.01


def _moving_square(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 16, 16, 1)`` uint8 frames: a 4x4 square of 200 that moves 30 % of the time.

    Sensor noise of 0..5 grey levels stays below Reducto's 21, and a square edge
    changes a pixel by 195..205: no difference lies near the bound. The result
    is the square's horizontal zone (``x // 4``).
    """
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 6, size=(n, 16, 16, 1)).astype(np.uint8)
    x = y = 6
    zones = []
    for i in range(n):
        if rng.random() < 0.3:
            x = int(np.clip(x + rng.integers(-3, 4), 0, 12))
            y = int(np.clip(y + rng.integers(-3, 4), 0, 12))
        frames[i, y : y + 4, x : x + 4] = 200
        zones.append(x // 4)
    return frames, np.array(zones)


def _pixel_share(a: np.ndarray, b: np.ndarray) -> float:
    """Reducto's pixel difference of two grey uint8 frames, written independently."""
    return float((np.abs(a.astype(int) - b.astype(int)) > 21).mean())


# ============================================================================ Reducto
FIVE = np.zeros((5, 4, 4, 1), dtype=np.uint8)
FIVE[1, 0, 0] = 255  # one pixel on
FIVE[2, 0, :2] = 255  # a second pixel on
FIVE[3] = FIVE[2]  # still
FIVE[4, :2, :2] = 255  # four pixels on
FIVE_RESULTS = np.array([10, 11, 12, 13, 14])


def test_reducto_differences_are_to_the_previous_frame() -> None:
    # Execute
    differences = frame_differences(FIVE)

    # Assert: 1, 1, 0 and 2 of 16 pixels changed; nothing precedes frame 0
    assert differences.tolist() == [np.inf, 1 / 16, 1 / 16, 0.0, 2 / 16]
    assert Reducto(FIVE, FIVE_RESULTS).differences.tolist() == differences.tolist()


@pytest.mark.parametrize(
    ("threshold", "served", "filtered"),
    [
        # 0 filters nothing: no difference is below it
        (0.0, [10, 11, 12, 13, 14], [False, False, False, False, False]),
        # frame 2 is 1/16 from frame 1 but 2/16 from frame 0, the last one sent
        (0.1, [10, 10, 12, 12, 14], [False, True, False, True, False]),
        # frames 1-3 stay within 2/16 of frame 0; frame 4 is 4/16 away
        (0.2, [10, 10, 10, 10, 14], [False, True, True, True, False]),
        # everything after the first frame reuses it
        (np.inf, [10, 10, 10, 10, 10], [False, True, True, True, True]),
    ],
)
def test_reducto_replay_by_hand(
    threshold: float, served: list[int], filtered: list[bool]
) -> None:
    # Prepare
    reducto = Reducto(FIVE, FIVE_RESULTS)

    # Execute
    out, mask = reducto.serve(threshold)

    # Assert
    assert out.tolist() == served
    assert mask.tolist() == filtered


@pytest.mark.parametrize("threshold", [0.005, 0.02, 0.05, 0.1])
def test_reducto_reuses_exactly_the_frames_close_to_the_last_sent(
    threshold: float,
) -> None:
    # Prepare
    frames, zones = _moving_square()
    reducto = Reducto(frames, zones)
    expected_filtered, expected_source, last = [False], [0], 0
    for i in range(1, len(frames)):
        below = _pixel_share(frames[i], frames[last]) < threshold
        expected_filtered.append(below)
        last = last if below else i
        expected_source.append(last)

    # Execute
    served, filtered = reducto.serve(threshold)

    # Assert
    assert filtered.tolist() == expected_filtered
    assert served.tolist() == zones[expected_source].tolist()
    assert 0 < filtered.sum() < len(frames) - 1  # the case is not degenerate


def test_reducto_sweeps_to_a_target_accuracy() -> None:
    # Prepare
    frames, zones = _moving_square()
    reducto = Reducto(frames, zones, feature="edge")

    # Execute
    point = choose_threshold(GRID, reuse_evaluation(reducto.serve, zones), 0.9)

    # Assert
    assert point.accuracy >= 0.9
    assert point.filter_rate > 0.5  # the square stands still 70 % of the time


def test_edge_feature_ignores_a_uniform_brightness_change() -> None:
    # Prepare: a square on a grey background, then the same scene 40 levels brighter
    frame = np.full((1, 16, 16, 1), 50, dtype=np.uint8)
    frame[0, 4:10, 4:10] = 150
    frames = np.concatenate([frame, frame + 40])

    # Execute
    pixel = frame_differences(frames, "pixel")[1]
    edge = frame_differences(frames, "edge")[1]

    # Assert: every pixel moved by 40 > 21; no edge strength moved
    assert pixel == 1.0
    assert edge == 0.0


def test_area_feature_measures_the_largest_changed_region() -> None:
    # Prepare: a 2x2 blob and a lone pixel change, far apart
    frames = np.zeros((2, 16, 16), dtype=np.float32)
    frames[1, 2:4, 2:4] = 1.0
    frames[1, 12, 12] = 1.0

    # Execute
    area = frame_differences(frames, "area")[1]
    pixel = frame_differences(frames, "pixel")[1]

    # Assert: dilated once, the blob covers 4x4 pixels and the lone pixel 3x3
    assert area == 16 / 256
    assert pixel == 5 / 256


def test_pixel_feature_greys_the_difference_of_colour_frames() -> None:
    # Prepare: red moves by 100 (luma 29.9 > 21), then blue by 100 (luma 11.4)
    frames = np.zeros((3, 2, 2, 3), dtype=np.uint8)
    frames[1, ..., 0] = 100
    frames[2, ..., 0] = 100
    frames[2, ..., 2] = 100

    # Execute
    differences = frame_differences(frames)

    # Assert
    assert differences[1:].tolist() == [1.0, 0.0]


def test_pixel_feature_on_vectors() -> None:
    # Prepare: 4-d signals, one entry steps by 1 (> change 0.5), then stays
    signals = np.array([[0.0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1.2]])

    # Execute
    differences = frame_differences(signals, change=0.5)

    # Assert
    assert differences.tolist() == [np.inf, 0.25, 0.0]


# ========================================================================= FoggyCache
def _clusters(
    n_per: int, centres: int = 6, dim: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Keys around ``centres`` far-apart points (spread 0.1); result = cluster id."""
    rng = np.random.default_rng(seed)
    middles = rng.normal(0.0, 10.0, size=(centres, dim))
    ids = np.repeat(np.arange(centres), n_per)
    keys = middles[ids] + rng.normal(0.0, 0.1, size=(len(ids), dim))
    order = rng.permutation(len(ids))
    return keys[order], ids[order]


def test_lsh_finds_exact_duplicates_and_prunes_far_keys() -> None:
    # Prepare
    keys, ids = _clusters(30)
    cache = LSHCache(capacity=256, dim=8, k=5)
    for key, cid in zip(keys, ids, strict=True):
        cache.insert(key, int(cid))

    # Execute
    candidates = [cache.candidates(key) for key in keys]
    answers = [cache.lookup(key, count_uses=False) for key in keys]

    # Assert: a key shares every bucket with itself; other clusters are hashed away
    assert cache.bucket_width is not None
    assert all(i in found for i, found in enumerate(candidates))
    assert all(a.distance == 0.0 and a.hit for a in answers)
    assert [a.value for a in answers] == ids.tolist()
    assert max(len(found) for found in candidates) < len(keys) / 2


@pytest.mark.parametrize(
    ("values", "hit", "theta"),
    [
        ([1, 1, 1, 1, 1], True, 1.0),  # unanimous neighbours
        ([1, 1, 1, 2, 2], True, 0.6),  # a 3-of-5 majority clears θ_T = 0.5
        ([1, 1, 2, 2, 3], False, 0.4),  # a mixed neighbourhood is refused
    ],
)
def test_homogeneity_check(values: list[int], hit: bool, theta: float) -> None:
    # Prepare: five keys near the origin, five far ones that must not vote
    rng = np.random.default_rng(1)
    near = rng.normal(0.0, 0.05, size=(5, 4))
    far = 20.0 + rng.normal(0.0, 0.05, size=(5, 4))
    cache = LSHCache(capacity=10, dim=4, k=5, bucket_width=2.0)
    for key, value in zip(
        np.vstack([near, far]), [*values, 7, 7, 7, 7, 7], strict=True
    ):
        cache.insert(key, value)

    # Execute
    answer = cache.lookup(np.zeros(4))

    # Assert: the far keys were hashed away; 1 leads every vote it wins
    assert answer.candidates == 5
    assert answer.hit is hit
    assert answer.theta == pytest.approx(theta)
    if hit:
        assert answer.value == 1


def test_too_few_candidates_is_a_miss() -> None:
    # Prepare: three unanimous keys, but K = 5
    cache = LSHCache(capacity=8, dim=2, k=5, bucket_width=1.0)
    for key in ([0.0, 0.0], [0.01, 0.0], [0.0, 0.01]):
        cache.insert(np.array(key), 4)

    # Execute
    answer = cache.lookup(np.array([0.005, 0.005]))

    # Assert
    assert (answer.hit, answer.theta, answer.candidates) == (False, 1.0, 3)


def test_eviction_unhashes_the_least_used_entry() -> None:
    # Prepare: three far-apart keys; a and b get used, c does not
    a, b, c, d = (np.full(2, v) for v in (0.0, 10.0, 20.0, 30.0))
    cache = LSHCache(capacity=3, dim=2, k=1, bucket_width=1.0)
    for key, value in ((a, 1), (b, 2), (c, 3)):
        cache.insert(key, value)
    assert cache.lookup(a).hit and cache.lookup(b).hit

    # Execute
    cache.insert(d, 4)

    # Assert: d took c's slot; c hashes to nothing any more
    assert cache.values.tolist() == [1, 2, 4]
    assert cache.candidates(c).tolist() == []
    assert cache.candidates(d).tolist() == [2]


def test_foggycache_replay_reuses_only_after_warm_up() -> None:
    # Prepare
    keys, ids = _clusters(20)
    replay = FoggyCache(keys, ids, capacity=24, k=3)

    # Execute
    served, filtered = replay.serve(1.0)
    point = choose_reuse_threshold(GRID, replay.serve, ids, 0.9)

    # Assert: warm-up runs the model; hits are right (clusters are far apart)
    assert not filtered[:24].any()
    assert filtered.mean() > 0.5
    assert (served == ids).all()
    assert point.accuracy >= 0.9
    assert point.filter_rate == filtered.mean()


def test_low_level_features() -> None:
    # Prepare
    frames = np.full((2, 16, 16, 3), 51, dtype=np.uint8)  # grey 0.2
    signals = np.random.default_rng(2).normal(size=(10, 2000))

    # Execute
    thumbs = low_level_features(frames, thumbnail=4)
    projected = low_level_features(signals, dim=256, seed=3)
    again = low_level_features(signals, dim=256, seed=3)
    short = low_level_features(signals[:, :100], dim=256)

    # Assert: thumbnails average grey; a projection keeps distances (JL), seeded
    assert thumbs.shape == (2, 16)
    assert np.allclose(thumbs, 0.2, atol=1e-6)
    raw = np.linalg.norm(signals[:, None] - signals[None], axis=2)
    kept = np.linalg.norm(projected[:, None] - projected[None], axis=2)
    off = ~np.eye(10, dtype=bool)
    assert np.abs(kept[off] / raw[off] - 1).max() < 0.35
    assert np.array_equal(projected, again)
    assert np.array_equal(short, signals[:, :100].astype(np.float32))


# ====================================================================== FilterForward
def _squares(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 1, 16, 16)`` noise; half hold a bright square. Skip (1) the empty ones."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 0.1, size=(n, 1, 16, 16)).astype(np.float32)
    skip = rng.random(n) < 0.5
    for i in np.flatnonzero(~skip):
        top, left = rng.integers(0, 12, size=2)
        images[i, 0, top : top + 4, left : left + 4] += 1.0
    return images, skip


def _extractor() -> nn.Module:
    """A small random CNN standing in for a pretrained base network."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


def test_filterforward_learns_a_separable_skip_rule() -> None:
    # Prepare
    train_x, train_y = _squares(128, seed=0)
    test_x, test_y = _squares(64, seed=1)
    extractor = _extractor()
    before = [p.detach().clone() for p in extractor.parameters()]
    ff = FilterForward(extractor, in_channels=8, hidden=16, seed=0)

    # Execute
    losses = ff.fit(train_x, train_y, epochs=10, lr=1e-2)
    prob = ff.skip_probability(test_x)
    point = choose_skip_threshold(prob, test_y, 0.9)

    # Assert: held-out accuracy; the extractor stayed frozen and in train mode
    assert prob.shape == (64,)
    assert ((prob >= 0.5) == test_y).mean() > 0.9
    assert losses[-1] < losses[0]
    assert point.accuracy >= 0.9 and point.filter_rate > 0.4
    after = list(extractor.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert extractor.training


def test_filterforward_is_deterministic_given_seeds() -> None:
    # Prepare
    x, y = _squares(32, seed=4)
    rng_before = torch.random.get_rng_state()

    # Execute
    runs = []
    for _ in range(2):
        ff = FilterForward(_extractor(), in_channels=8, hidden=8, seed=5)
        losses = ff.fit(x, y, epochs=3, batch_size=8, seed=6)
        runs.append((losses, ff.skip_probability(x)))

    # Assert: same losses and outputs; the global torch RNG was not drawn from
    assert runs[0][0] == runs[1][0]
    assert np.array_equal(runs[0][1], runs[1][1])
    assert torch.equal(torch.random.get_rng_state(), rng_before)


def test_filterforward_takes_vector_features() -> None:
    # Prepare: an extractor that outputs (N, C) vectors
    x, y = _squares(16, seed=7)
    ff = FilterForward(nn.Flatten(), in_channels=256, hidden=4)

    # Execute
    ff.fit(x, y, epochs=1)
    prob = ff.skip_probability(torch.from_numpy(x))

    # Assert
    assert prob.shape == (16,)
    assert ((prob >= 0.0) & (prob <= 1.0)).all()


# ========================================================================== bad input
FRAMES = np.zeros((3, 4, 4, 1), dtype=np.uint8)
NAN_FRAMES = np.zeros((3, 4, 4, 1), dtype=np.float32)
NAN_FRAMES[1, 0, 0, 0] = np.nan


@pytest.mark.parametrize(
    ("inputs", "results", "kwargs", "message"),
    [
        # one value per input is not a stream of arrays
        (np.zeros(3), np.zeros(3), {}, "inputs has shape (3,); expected a stream"),
        # an empty stream has no first frame to send
        (FRAMES[:0], np.zeros(0), {}, "inputs has shape (0, 4, 4, 1); expected a"),
        # a NaN pixel compares with nothing
        (NAN_FRAMES, np.zeros(3), {}, "inputs[1, 0, 0, 0] is nan; expected a finite"),
        # int64 pixels: neither grey levels nor intensities
        (FRAMES.astype(np.int64), np.zeros(3), {}, "inputs has dtype int64; expected"),
        # two channels are neither grey nor RGB
        (np.zeros((3, 4, 4, 2)), np.zeros(3), {}, "expected images (N, H, W, C)"),
        # edges need an image
        (np.zeros((3, 5)), np.zeros(3), {"feature": "edge"}, "for the edge feature"),
        # a 3x3 Sobel filter needs 3 pixels each way
        (np.zeros((3, 2, 2)), np.zeros(3), {"feature": "area"}, "H, W >= 3 for the"),
        # Reducto's corner feature is not implemented
        (FRAMES, np.zeros(3), {"feature": "corner"}, "feature is 'corner'; expected"),
        # a result short
        (FRAMES, np.zeros(2), {}, "results has shape (2,); expected (3,) or (3, ...)"),
        # a NaN result would be served as it is
        (FRAMES, np.array([0.0, np.nan, 1.0]), {}, "results[1] is not finite"),
        # a negative change counts every pixel as changed
        (FRAMES, np.zeros(3), {"change": -0.1}, "change is -0.1; expected a finite"),
        # NaN change
        (FRAMES, np.zeros(3), {"change": float("nan")}, "change is nan; expected a"),
    ],
)
def test_reducto_refuses(
    inputs: np.ndarray, results: np.ndarray, kwargs: dict[str, Any], message: str
) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=re.escape(message)):
        Reducto(inputs, results, **kwargs)


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        # NaN is no threshold
        (float("nan"), "threshold is nan; expected a number"),
        # differences are >= 0: a negative threshold is a mistake, not "never"
        (-0.5, "threshold is -0.5; expected a difference >= 0"),
        # a string
        ("0.1", "threshold is '0.1'; expected a number"),
    ],
)
def test_reducto_serve_refuses(threshold: Any, message: str) -> None:
    # Prepare
    reducto = Reducto(FRAMES, np.zeros(3))

    # Execute / Assert
    with pytest.raises(ValueError, match=re.escape(message)):
        reducto.serve(threshold)


KEYS = np.zeros((4, 3))
NAN_KEYS = np.zeros((4, 3))
NAN_KEYS[2, 1] = np.nan


@pytest.mark.parametrize(
    ("features", "results", "kwargs", "message"),
    [
        # one number per input is not a feature vector
        (np.zeros(4), np.zeros(4, int), {}, "features has shape (4,); expected (N, D)"),
        # an empty stream
        (KEYS[:0], np.zeros(0, int), {}, "features has shape (0, 3); expected (N, D)"),
        # a NaN feature has no distance
        (NAN_KEYS, np.zeros(4, int), {}, "features[2][1] is nan; expected a finite"),
        # float results in an integer cache would be truncated
        (KEYS, np.zeros(4), {}, "results has dtype float64; expected integers"),
        # a result short
        (KEYS, np.zeros(3, int), {}, "results has shape (3,); expected (4,)"),
        # a cache that never holds K entries never hits
        (KEYS, np.zeros(4, int), {"k": 5}, "k is 5; expected at most capacity (4)"),
        # a zero bucket width puts every key in its own bucket
        (
            KEYS,
            np.zeros(4, int),
            {"bucket_width": 0.0},
            "bucket_width is 0.0; expected",
        ),
        # an infinite width factor hashes everything together
        (KEYS, np.zeros(4, int), {"width_factor": np.inf}, "width_factor is inf;"),
        # no hash table
        (KEYS, np.zeros(4, int), {"num_tables": 0}, "num_tables is 0; expected a"),
        # an unknown result type
        (KEYS, np.zeros(4, int), {"result_type": "str"}, "result_type is 'str';"),
    ],
)
def test_foggycache_refuses(
    features: np.ndarray, results: np.ndarray, kwargs: dict[str, Any], message: str
) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=re.escape(message)):
        FoggyCache(features, results, **{"capacity": 4, "k": 2, **kwargs})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # θ above 1 can never be met
        (
            lambda: FoggyCache(KEYS, np.zeros(4, int), 4, 2).serve(1.5),
            "theta_threshold is 1.5; expected a value in [0, 1]",
        ),
        # a query of the wrong length
        (
            lambda: LSHCache(4, 3, 2).lookup(np.zeros(2)),
            "query has shape (2,); expected (3,)",
        ),
        # a bool is not a class index
        (
            lambda: LSHCache(4, 3, 2).insert(np.zeros(3), True),
            "value is True; expected an integer result",
        ),
        # an infinite result in a float cache
        (
            lambda: LSHCache(4, 3, 2, result_type="float").insert(np.zeros(3), np.inf),
            "value is inf; expected a finite result",
        ),
        # a zero-pixel thumbnail
        (lambda: low_level_features(FRAMES, thumbnail=0), "thumbnail is 0; expected"),
    ],
)
def test_lsh_refuses(call: Any, message: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


IMAGES = np.zeros((4, 1, 8, 8), dtype=np.float32)
NAN_IMAGES = IMAGES.copy()
NAN_IMAGES[0, 0, 0, 0] = np.nan


@pytest.mark.parametrize(
    ("extractor", "inputs", "labels", "message"),
    [
        # nothing to extract from
        (
            _extractor(),
            IMAGES[:0],
            np.zeros(0),
            "inputs has shape (0, 1, 8, 8); expected a batch",
        ),
        # a NaN pixel
        (_extractor(), NAN_IMAGES, np.zeros(4), "inputs holds NaN or inf"),
        # skip is a decision, not a score
        (
            _extractor(),
            IMAGES,
            np.array([0, 1, 0.5, 0]),
            "labels[2] is 0.5; expected 0 or 1",
        ),
        # a label short
        (_extractor(), IMAGES, np.zeros(3), "labels has shape (3,); expected (4,)"),
        # the extractor gives 4 channels, the micro-classifier expects 8
        (
            nn.Conv2d(1, 4, 1),
            IMAGES,
            np.zeros(4),
            "extractor output has 4 channels; expected in_channels (8)",
        ),
        # a sequence output is neither maps nor vectors
        (nn.Flatten(2), IMAGES, np.zeros(4), "extractor output has shape (4, 1, 64)"),
    ],
)
def test_filterforward_refuses(
    extractor: nn.Module, inputs: np.ndarray, labels: np.ndarray, message: str
) -> None:
    # Prepare
    ff = FilterForward(extractor, in_channels=8)

    # Execute / Assert
    with pytest.raises(ValueError, match=re.escape(message)):
        ff.fit(inputs, labels, epochs=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # not a torch module
        ((lambda x: x, 8), "extractor is a function; expected a torch.nn.Module"),
        # no channel to classify
        ((nn.Identity(), 0), "in_channels is 0; expected a positive integer"),
    ],
)
def test_filterforward_constructor_refuses(args: tuple[Any, ...], message: str) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=re.escape(message)):
        FilterForward(*args)


def test_filterforward_fit_refuses_a_zero_learning_rate() -> None:
    # Prepare
    ff = FilterForward(_extractor(), in_channels=8)

    # Execute / Assert
    with pytest.raises(ValueError, match=re.escape("lr is 0.0; expected a finite")):
        ff.fit(IMAGES, np.zeros(4), lr=0.0)
