"""Contextual predictor: size, shapes, learning a packet-size pattern, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgecloud.packetgame import (
    SIZE_UNIT_BYTES,
    ContextualPredictor,
    PacketWindows,
    fit,
    packet_views,
)


def _synthetic_windows(
    rng: np.random.Generator, n: int, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GOP-like windows; label 1 when some P-frame in the window is large (motion)."""
    is_intra = rng.random((n, window)) < 0.2
    p_sizes = rng.lognormal(7.0, 1.0, (n, window))
    i_sizes = rng.lognormal(11.0, 0.3, (n, window))  # large, but not informative
    sizes = np.where(is_intra, i_sizes, p_sizes)
    largest_p = np.where(is_intra, 0.0, sizes).max(axis=1)
    labels = (largest_p > math.exp(8.0)).astype(np.float64)
    return sizes, is_intra, labels


def test_parameter_count_is_a_few_thousand_at_most() -> None:
    # Execute
    single = ContextualPredictor(window=5)
    multi = ContextualPredictor(window=5, num_tasks=4)

    # Assert
    for model in (single, multi):
        count = sum(p.numel() for p in model.parameters())
        assert 100 < count <= 5000


@pytest.mark.parametrize("num_tasks", [1, 3])
def test_output_shape_and_range(num_tasks: int) -> None:
    # Prepare
    rng = np.random.default_rng(0)
    model = ContextualPredictor(window=6, num_tasks=num_tasks, seed=0)
    views = rng.random((40, 2, 6)).astype(np.float32)
    estimates = rng.random((40, num_tasks)) * 3

    # Execute
    probs = model.predict(views, estimates)
    with torch.no_grad():
        reference = model(torch.from_numpy(views), torch.tensor(estimates).float())

    # Assert
    assert probs.shape == (40, num_tasks) and probs.dtype == np.float32
    assert ((probs > 0) & (probs < 1)).all()
    np.testing.assert_allclose(probs, reference.numpy(), atol=1e-6)


def test_fit_learns_large_p_frames_and_beats_chance() -> None:
    # Prepare
    rng = np.random.default_rng(1)
    sizes, is_intra, labels = _synthetic_windows(rng, 3000, 5)
    train, test = slice(0, 2400), slice(2400, None)
    estimates = np.full(3000, 0.5)  # no temporal information
    model = ContextualPredictor(window=5, seed=0)
    before = model.predict(packet_views(sizes[test], is_intra[test]), estimates[test])

    # Execute
    history = fit(
        model, sizes[train], is_intra[train], estimates[train], labels[train],
        epochs=25, lr=0.01, batch_size=128, seed=0,
    )  # fmt: skip
    probs = model.predict(packet_views(sizes[test], is_intra[test]), estimates[test])

    # Assert
    accuracy = float(((probs[:, 0] > 0.5) == (labels[test] > 0.5)).mean())
    chance = max(labels[test].mean(), 1 - labels[test].mean())
    assert len(history) == 25
    assert history[-1] < 0.5 * history[0]
    assert history[-1] < math.log(2)  # better than predicting 0.5 everywhere
    assert accuracy > chance + 0.15 and accuracy > 0.85
    # predict() follows the trained weights (its conv matrix cache was refreshed)
    assert not np.allclose(before, probs)
    with torch.no_grad():
        reference = model(
            torch.from_numpy(packet_views(sizes[test], is_intra[test])),
            torch.full((600, 1), 0.5),
        )
    np.testing.assert_allclose(probs, reference.numpy(), atol=1e-6)


def test_fit_is_deterministic_for_a_seed() -> None:
    # Prepare
    rng = np.random.default_rng(2)
    sizes, is_intra, labels = _synthetic_windows(rng, 300, 4)
    estimates = rng.random((300, 2))
    two_tasks = np.stack((labels, 1 - labels), axis=1)

    def run(fit_seed: int) -> tuple[list[float], list[torch.Tensor]]:
        model = ContextualPredictor(window=4, num_tasks=2, seed=3)
        history = fit(
            model, sizes, is_intra, estimates, two_tasks, epochs=3, batch_size=64,
            seed=fit_seed,
        )  # fmt: skip
        return history, [p.detach().clone() for p in model.parameters()]

    # Execute
    first, first_weights = run(5)
    second, second_weights = run(5)
    other, _ = run(6)

    # Assert
    assert first == second
    assert all(
        torch.equal(a, b) for a, b in zip(first_weights, second_weights, strict=True)
    )
    assert other != first


def test_seed_leaves_the_global_rng_alone() -> None:
    # Prepare
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)

    # Execute
    ContextualPredictor(window=5, seed=99)
    drawn = torch.rand(3)

    # Assert
    assert torch.equal(drawn, expected)


def test_packet_views_split_intra_and_predicted_frames() -> None:
    # Prepare
    sizes = np.array([[100.0, 0.0, 5000.0]])
    is_intra = np.array([[True, False, False]])

    # Execute
    views = packet_views(sizes, is_intra)

    # Assert
    scaled = np.log1p(sizes[0] / SIZE_UNIT_BYTES)
    np.testing.assert_allclose(views[0, 0], [scaled[0], 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(views[0, 1], [0.0, 0.0, scaled[2]], rtol=1e-6)


def test_packet_windows_keep_the_last_w_packets_in_order() -> None:
    # Prepare
    rng = np.random.default_rng(3)
    windows = PacketWindows(num_streams=4, window=3)
    history_sizes, history_intra = [], []

    for step in range(7):
        sizes = rng.random(4) * 1e4
        intra = rng.random(4) < 0.4
        history_sizes.append(sizes)
        history_intra.append(intra)

        # Execute
        windows.push(sizes, intra)
        views = windows.views()

        # Assert: zero padding (no packet) until three packets arrived
        pad = max(0, 3 - (step + 1))
        expected_sizes = np.concatenate(
            [np.zeros((4, pad)), np.array(history_sizes[-3:]).T], axis=1
        )
        expected_intra = np.concatenate(
            [np.zeros((4, pad), bool), np.array(history_intra[-3:]).T], axis=1
        )
        assert views.shape == (4, 2, 3) and views.dtype == np.float32
        np.testing.assert_array_equal(
            views, packet_views(expected_sizes, expected_intra)
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # a kernel wider than the window has no valid position
        ({"window": 3, "kernel": 4}, r"kernel is 4; expected at most window = 3"),
        # zero filters
        ({"window": 5, "channels": 0}, r"channels is 0"),
        # zero tasks
        ({"window": 5, "num_tasks": 0}, r"num_tasks is 0"),
    ],
)
def test_predictor_rejects_bad_shapes(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ContextualPredictor(**kwargs)


@pytest.mark.parametrize(
    ("views_shape", "estimates", "match"),
    [
        # window of 4 packets for a 5-packet model
        ((3, 2, 4), np.zeros(3), r"views has shape \(3, 2, 4\); expected \(m, 2, 5\)"),
        # one estimate per stream is required
        ((3, 2, 5), np.zeros(2), r"estimates has shape \(2,\); expected \(3, 1\)"),
        # estimates are >= 0 (UCB values)
        ((3, 2, 5), np.array([0.1, -1.0, 0.2]), r"estimates\[1\] is -1.0"),
    ],
)
def test_predict_rejects_bad_inputs(
    views_shape: tuple[int, int, int], estimates: np.ndarray, match: str
) -> None:
    model = ContextualPredictor(window=5, seed=0)
    with pytest.raises(ValueError, match=match):
        model.predict(np.zeros(views_shape, np.float32), estimates)


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        # labels are normalised feedback in [0, 1]
        (np.full(8, 2.0), {}, r"labels hold 2.0; expected values in \[0, 1\]"),
        # one label per window
        (np.zeros(7), {}, r"labels has shape \(7,\); expected \(8, 1\)"),
        # RMSprop needs a positive learning rate
        (np.zeros(8), {"lr": 0.0}, r"lr is 0.0; expected a finite number > 0"),
        # at least one epoch
        (np.zeros(8), {"epochs": 0}, r"epochs is 0"),
    ],
)
def test_fit_rejects_bad_inputs(
    labels: np.ndarray, kwargs: dict[str, float], match: str
) -> None:
    model = ContextualPredictor(window=5, seed=0)
    sizes, is_intra = np.ones((8, 5)), np.zeros((8, 5), bool)
    with pytest.raises(ValueError, match=match):
        fit(model, sizes, is_intra, np.zeros(8), labels, **kwargs)  # type: ignore[arg-type]


def test_packet_views_reject_mismatched_flags() -> None:
    # is_intra must match sizes (one flag per packet)
    with pytest.raises(ValueError, match=r"is_intra has shape \(2, 2\)"):
        packet_views(np.ones((2, 3)), np.zeros((2, 2), bool))
