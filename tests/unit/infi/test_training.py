"""InFi training: skip learns a synthetic rule, reuse separates classes, seeds."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from edgecloud.infi.features import feature_network
from edgecloud.infi.siamese import InputFilter
from edgecloud.infi.training import fit_reuse, fit_skip


def _dark_or_lit(
    rng: np.random.Generator, n: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """12x12 RGB noise images; label 1 (redundant) when the image is dark."""
    dark = rng.random(n) < 0.5
    brightness = np.where(dark, 0.15, 1.0)[:, None, None, None]
    images = rng.random((n, 3, 12, 12)) * brightness
    return images.astype(np.float32), dark.astype(np.float64)


def _stripes(
    rng: np.random.Generator, n: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Noisy 12x12 grey stripes, random phase and contrast: 0 horizontal, 1 vertical."""
    classes = rng.integers(0, 2, n)
    phase = rng.integers(0, 4, n)
    profile = ((np.arange(12)[None, :] + phase[:, None]) % 4 < 2).astype(np.float32)
    horizontal = np.repeat(profile[:, :, None], 12, axis=2)  # (n, 12, 12): rows vary
    vertical = np.repeat(profile[:, None, :], 12, axis=1)  # columns vary
    images = np.where(classes[:, None, None] == 0, horizontal, vertical)[:, None]
    images = images * rng.uniform(0.5, 1.0, (n, 1, 1, 1))
    images = images + rng.normal(0.0, 0.1, images.shape)
    return images.astype(np.float32), classes


def _auc(positive: npt.NDArray[Any], negative: npt.NDArray[Any]) -> float:
    """P(score of a random positive > score of a random negative), ties count half."""
    greater = (positive[:, None] > negative[None, :]).mean()
    ties = (positive[:, None] == negative[None, :]).mean()
    return float(greater + 0.5 * ties)


def test_fit_skip_learns_that_dark_images_are_redundant() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    train_x, train_y = _dark_or_lit(rng, 200)
    test_x, test_y = _dark_or_lit(rng, 200)
    model = InputFilter(feature_network("image", (3, 12, 12), 16, seed=0), seed=0)

    # Execute
    history = fit_skip(model, train_x, train_y, epochs=5, lr=1e-3, batch_size=32)
    skip = model.predict_skip(test_x)[:, 0]

    # Assert
    accuracy = float(((skip > 0.5) == (test_y > 0.5)).mean())
    assert len(history) == 5 and history[-1] < history[0]
    assert accuracy > 0.9
    assert not model.training


def test_fit_reuse_gives_same_class_pairs_higher_reuse_probability() -> None:
    # Prepare
    rng = np.random.default_rng(1)
    train_x, train_y = _stripes(rng, 200)
    test_x, test_y = _stripes(rng, 200)
    model = InputFilter(feature_network("image", (1, 12, 12), 16, seed=0), seed=0)
    left, right = rng.integers(0, 200, 1000), rng.integers(0, 200, 1000)
    same = test_y[left] == test_y[right]

    # Execute
    history = fit_reuse(model, train_x, train_y, epochs=5, lr=1e-3, batch_size=32)
    reuse = model.predict_pair_reuse(test_x[left], test_x[right])[:, 0]

    # Assert
    assert len(history) == 5 and history[-1] < history[0]
    assert _auc(reuse[same], reuse[~same]) > 0.9
    assert reuse[same].mean() > 0.5 > reuse[~same].mean()


def test_fit_reuse_honours_the_same_predicate_of_regression_results() -> None:
    # Prepare: distinct float results; exact equality never matches two of them
    rng = np.random.default_rng(2)
    inputs = rng.normal(size=(40, 4)).astype(np.float32)
    results = rng.random(40)
    calls: list[tuple[Any, Any]] = []

    def always(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return True

    def model() -> InputFilter:
        return InputFilter(feature_network("vector", (4,), 8, seed=0), seed=0)

    never_model, always_model = model(), model()

    # Execute
    fit_reuse(never_model, inputs, results, epochs=15, lr=1e-2, seed=0)
    fit_reuse(always_model, inputs, results, epochs=15, lr=1e-2, seed=0, same=always,
              pairs_per_epoch=30)  # fmt: skip
    never = never_model.predict_pair_reuse(inputs[:20], inputs[20:])
    sometimes = always_model.predict_pair_reuse(inputs[:20], inputs[20:])

    # Assert
    assert len(calls) == 15 * 30
    assert all(isinstance(a, float | np.floating) for a, _ in calls)
    assert (never < 0.5).all() and (sometimes > 0.5).all()


def test_fit_skip_trains_one_output_per_task() -> None:
    # Prepare: task 0 skips dark images, task 1 the lit ones
    rng = np.random.default_rng(3)
    x, dark = _dark_or_lit(rng, 64)
    labels = np.stack((dark, 1.0 - dark), axis=1)
    model = InputFilter(
        feature_network("image", (3, 12, 12), 16, seed=0), num_tasks=2, seed=0
    )

    # Execute
    history = fit_skip(model, x, labels, epochs=8, lr=3e-3, batch_size=16)
    skip = model.predict_skip(x)

    # Assert
    assert skip.shape == (64, 2) and history[-1] < history[0]
    assert ((skip[:, 0] > 0.5) == (dark > 0.5)).mean() > 0.8
    assert ((skip[:, 1] > 0.5) == (dark < 0.5)).mean() > 0.8


def test_same_seed_gives_identical_weights_and_leaves_the_global_rng_alone() -> None:
    # Prepare
    rng = np.random.default_rng(4)
    x, dark = _dark_or_lit(rng, 48)
    classes = rng.integers(0, 3, 48)

    def run(fit: str, seed: int) -> tuple[list[float], list[torch.Tensor]]:
        features = feature_network("image", (3, 12, 12), 8, seed=7)
        model = InputFilter(features, dropout=0.3, seed=7)  # dropout draws masks
        if fit == "skip":
            history = fit_skip(model, x, dark, epochs=2, batch_size=16, seed=seed)
        else:
            history = fit_reuse(model, x, classes, epochs=2, batch_size=16, seed=seed)
        return history, [p.detach().clone() for p in model.parameters()]

    for fit in ("skip", "reuse"):
        torch.manual_seed(11)
        expected = torch.rand(3)
        torch.manual_seed(11)

        # Execute
        first, first_weights = run(fit, 5)
        drawn = torch.rand(3)
        second, second_weights = run(fit, 5)
        other, _ = run(fit, 6)

        # Assert
        assert torch.equal(drawn, expected)
        assert first == second and other != first
        pairs = zip(first_weights, second_weights, strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)


X = np.zeros((8, 4), dtype=np.float32)
LABELS = np.zeros(8)


@pytest.mark.parametrize(
    ("inputs", "labels", "kwargs", "message"),
    [
        # one label short
        (X, np.zeros(7), {}, "labels has shape (7,); expected (8,) or (8, 1) like the "
         "inputs"),
        # a soft label where skip needs a decision
        (X, np.array([0, 1, 0.5, 0, 0, 0, 0, 0]), {}, "labels[2] is 0.5; expected 0 "
         "or 1"),
        # a NaN label
        (X, np.full(8, np.nan), {}, "labels[0] is nan; expected 0 or 1"),
        # nothing to learn from
        (X[:0], LABELS[:0], {}, "inputs has 0 samples; expected at least one"),
        # no pass over the data
        (X, LABELS, {"epochs": 0}, "epochs is 0; expected a positive integer"),
        # a zero learning rate never moves
        (X, LABELS, {"lr": 0.0}, "lr is 0.0; expected a finite number > 0"),
        # an infinite learning rate diverges at once
        (X, LABELS, {"lr": math.inf}, "lr is inf; expected a finite number > 0"),
        # zero-sample batches
        (X, LABELS, {"batch_size": 0}, "batch_size is 0; expected a positive "
         "integer"),
        # the network's own shape check, raised from the first batch
        (np.zeros((8, 5), np.float32), LABELS, {}, "vector input has shape (8, 5); "
         "expected (N, 4)"),
    ],
)  # fmt: skip
def test_fit_skip_refuses_bad_inputs(
    inputs: npt.NDArray[Any],
    labels: npt.NDArray[Any],
    kwargs: dict[str, Any],
    message: str,
) -> None:
    model = InputFilter(feature_network("vector", (4,), 8, seed=0), seed=0)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        fit_skip(model, inputs, labels, **kwargs)


@pytest.mark.parametrize(
    ("inputs", "results", "kwargs", "message"),
    [
        # one sample forms no pair
        (X[:1], np.zeros(1), {}, "inputs has 1 sample; expected at least 2 to form "
         "pairs"),
        # results for another number of inputs
        (X, np.zeros(9), {}, "results has shape (9,); expected (8,) or (8, 1) like "
         "the inputs"),
        # a NaN regression output equals nothing, not even itself
        (X, np.array([0.0, 1.0, np.nan, 0, 0, 0, 0, 0]), {}, "results[2] is nan; "
         "expected finite numbers"),
        # no pair per epoch
        (X, np.zeros(8), {"pairs_per_epoch": 0}, "pairs_per_epoch is 0; expected a "
         "positive integer"),
        # parts of a multi-modal batch of different lengths
        ({"a": X, "b": X[:7]}, np.zeros(8), {}, "inputs has lengths {'a': 8, "
         "'b': 7}; expected the same N"),
    ],
)  # fmt: skip
def test_fit_reuse_refuses_bad_inputs(
    inputs: Any, results: npt.NDArray[Any], kwargs: dict[str, Any], message: str
) -> None:
    model = InputFilter(feature_network("vector", (4,), 8, seed=0), seed=0)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        fit_reuse(model, inputs, results, **kwargs)


def test_fits_refuse_a_model_that_is_not_an_input_filter() -> None:
    # a bare feature network has no classifier to train
    network = feature_network("vector", (4,), 8)
    with pytest.raises(ValueError, match=r"^model is a VectorNetwork; expected an "):
        fit_skip(network, X, LABELS)  # type: ignore[arg-type]
