"""InFi input filter: the distance classifier, skip as reuse of h(0), predict_*."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch

from edgecloud.infi.features import (
    ImageNetwork,
    MultiModalNetwork,
    feature_network,
)
from edgecloud.infi.siamese import InputFilter, null_input


def _image_filter(num_tasks: int = 1, dropout: float = 0.0) -> InputFilter:
    features = feature_network("image", (3, 8, 8), embedding_dim=12, seed=0)
    return InputFilter(features, num_tasks=num_tasks, dropout=dropout, seed=1)


def test_classifier_has_one_weight_row_per_task() -> None:
    # Execute
    model = _image_filter(num_tasks=3)

    # Assert
    assert model.classifier.weight.shape == (3, 12)
    assert model.classifier.bias.shape == (3,)
    assert model.embed(torch.rand(4, 3, 8, 8)).shape == (4, 12)


def test_reuse_probability_is_symmetric_and_sigmoid_b_at_distance_zero() -> None:
    # Prepare
    model = _image_filter(num_tasks=2)
    e1, e2 = torch.randn(5, 12), torch.randn(5, 12)

    # Execute
    forward, backward = model.reuse_probability(e1, e2), model.reuse_probability(e2, e1)
    identical = model.reuse_probability(e1, e1.clone())

    # Assert
    assert forward.shape == (5, 2)
    torch.testing.assert_close(forward, backward)
    expected = torch.sigmoid(model.classifier.bias).expand(5, 2)
    torch.testing.assert_close(identical, expected)
    manual = torch.sigmoid(
        (e1 - e2).abs() @ model.classifier.weight.T + model.classifier.bias
    )
    torch.testing.assert_close(forward, manual)


def test_reuse_probability_broadcasts_inputs_against_cached_keys() -> None:
    # Prepare
    model = _image_filter(num_tasks=2)
    queries, keys = torch.randn(3, 12), torch.randn(4, 12)

    # Execute
    table = model.reuse_probability(queries[:, None, :], keys[None, :, :])

    # Assert
    assert table.shape == (3, 4, 2)
    torch.testing.assert_close(
        table[2, 1], model.reuse_probability(queries[2], keys[1])
    )


def test_skip_is_reuse_against_the_embedding_of_the_zero_input() -> None:
    # Prepare
    model = _image_filter(num_tasks=2)
    x = torch.rand(6, 3, 8, 8)

    # Execute
    skip = model.skip_probability(x)
    reuse = model.reuse_probability(
        model.embed(x), model.embed(torch.zeros(1, 3, 8, 8))
    )
    skip_of_zero = model.skip_probability(torch.zeros(2, 3, 8, 8))

    # Assert
    assert skip.shape == (6, 2)
    torch.testing.assert_close(skip, reuse)
    # the zero input is at distance 0 from itself
    expected = torch.sigmoid(model.classifier.bias).expand(2, 2)
    torch.testing.assert_close(skip_of_zero, expected)


def test_the_skip_anchor_follows_the_current_weights() -> None:
    # Prepare
    model = _image_filter()
    x = torch.rand(4, 3, 8, 8)
    before = model.skip_probability(x).detach()

    # Execute: move the feature network as a training step would
    assert isinstance(model.features, ImageNetwork)
    with torch.no_grad():
        model.features.out.bias.add_(1.0)  # shifts every embedding, g(0) included
        model.features.out.weight.mul_(1.5)
    after = model.skip_probability(x).detach()
    reuse = model.reuse_probability(
        model.embed(x), model.embed(torch.zeros(1, 3, 8, 8))
    )

    # Assert
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, reuse.detach())


def test_gradients_reach_the_anchor_and_the_classifier() -> None:
    # Prepare
    model = _image_filter()

    # Execute
    torch.autograd.backward(model.skip_logits(torch.rand(3, 3, 8, 8)).sum())

    # Assert
    for parameter in model.parameters():
        assert parameter.grad is not None


def test_null_input_is_one_zero_sample_of_each_part() -> None:
    # Prepare
    batch = {
        "camera": torch.rand(4, 3, 8, 8),
        "text": torch.ones(4, 7, dtype=torch.int64),
    }

    # Execute
    null = null_input(batch)
    null_image = null_input(torch.rand(5, 1, 2, 2))

    # Assert
    assert isinstance(null, dict)
    assert null["camera"].shape == (1, 3, 8, 8) and not null["camera"].any()
    assert null["text"].shape == (1, 7) and null["text"].dtype == torch.int64
    assert isinstance(null_image, torch.Tensor) and null_image.shape == (1, 1, 2, 2)


def test_multimodal_filter_skips_on_mappings() -> None:
    # Prepare
    features = MultiModalNetwork(
        {
            "camera": ImageNetwork(3, 6),
            "text": feature_network("text", (5,), 6, vocab_size=9),
        },
        embedding_dim=8,
        seed=0,
    )
    model = InputFilter(features, num_tasks=2, seed=0)
    batch = {
        "camera": np.random.default_rng(0).random((3, 3, 8, 8)),
        "text": np.array([[1, 2, 0, 0, 0], [0, 0, 0, 0, 0], [8, 8, 8, 8, 8]]),
    }

    # Execute
    skip = model.predict_skip(batch)
    null = model.predict_skip(
        {"camera": np.zeros((1, 3, 8, 8)), "text": np.zeros((1, 5), int)}
    )

    # Assert
    assert skip.shape == (3, 2) and skip.dtype == np.float32
    np.testing.assert_allclose(
        null[0], torch.sigmoid(model.classifier.bias).detach().numpy(), rtol=1e-6
    )


def test_predict_helpers_return_float32_without_autograd_or_dropout() -> None:
    # Prepare
    model = _image_filter(num_tasks=2, dropout=0.5)
    model.train()
    x = np.random.default_rng(0).random((7, 3, 8, 8))  # float64 numpy

    # Execute
    first, second = model.predict_skip(x, batch_size=3), model.predict_skip(x)
    embeddings = model.predict_embeddings(x)
    pairs = model.predict_pair_reuse(x, x[::-1].copy())
    table = model.predict_reuse(embeddings[:, None, :], embeddings[None, :, :])

    # Assert: eval mode inside (dropout off), the caller's mode restored after
    assert model.training
    np.testing.assert_allclose(first, second, rtol=1e-6)
    assert first.shape == (7, 2) and first.dtype == np.float32
    assert embeddings.shape == (7, 12) and embeddings.dtype == np.float32
    assert pairs.shape == (7, 2) and table.shape == (7, 7, 2)
    np.testing.assert_allclose(pairs[0], table[0, 6], rtol=1e-5)
    np.testing.assert_allclose(pairs, pairs[::-1], rtol=1e-5)  # symmetric pairs
    assert ((first > 0) & (first < 1)).all()


def test_dropout_is_active_while_training() -> None:
    # Prepare
    model = _image_filter(dropout=0.5)
    model.train()
    x = torch.rand(4, 3, 8, 8)

    # Execute
    torch.manual_seed(0)
    first = model.embed(x)
    second = model.embed(x)

    # Assert
    assert not torch.equal(first, second)


@pytest.mark.parametrize(
    ("e1", "e2", "message"),
    [
        # embeddings of another width
        (torch.zeros(3, 5), torch.zeros(3, 12),
         "e1 has shape (3, 5); expected (..., 12)"),
        # a scalar is no embedding
        (torch.zeros(3, 12), torch.tensor(1.0), "e2 has shape (); expected (..., 12)"),
        # a NaN embedding (a diverged network)
        (torch.full((2, 12), float("nan")), torch.zeros(2, 12),
         "e1 holds NaN or inf; expected finite values"),
        # 3 queries against 4 keys without the broadcasting axes
        (torch.zeros(3, 12), torch.zeros(4, 12),
         "e1 has shape (3, 12) and e2 (4, 12); expected shapes that broadcast"),
    ],
)  # fmt: skip
def test_reuse_refuses_bad_embeddings(
    e1: torch.Tensor, e2: torch.Tensor, message: str
) -> None:
    model = _image_filter()
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        model.reuse_probability(e1, e2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # no task to filter for
        ({"num_tasks": 0}, "num_tasks is 0; expected a positive integer"),
        # dropout 1 zeroes every embedding
        ({"dropout": 1.0}, "dropout is 1.0; expected a number in [0, 1)"),
        # the feature network must check its inputs and expose embedding_dim
        ({"features": torch.nn.Linear(3, 4)},
         "features is a Linear; expected a FeatureNetwork"),
    ],
)  # fmt: skip
def test_filter_refuses_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"features": ImageNetwork(3, 4), **kwargs}
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        InputFilter(**arguments)


def test_predict_refuses_bad_batches() -> None:
    model = _image_filter()
    # nothing to predict
    with pytest.raises(ValueError, match=r"^x has 0 samples; expected at least one$"):
        model.predict_skip(np.zeros((0, 3, 8, 8)))
    # a zero batch size would loop forever
    with pytest.raises(ValueError, match=r"^batch_size is 0; expected a positive"):
        model.predict_skip(np.zeros((2, 3, 8, 8)), batch_size=0)
    # pairs need as many left as right inputs
    with pytest.raises(ValueError, match=r"^x2 has 3 samples; expected 2 like x1$"):
        model.predict_pair_reuse(np.zeros((2, 3, 8, 8)), np.zeros((3, 3, 8, 8)))
    # the network's own check, raised through predict
    with pytest.raises(ValueError, match=re.escape("expected (N, 3, H, W)")):
        model.predict_skip(np.zeros((2, 1, 8, 8)))
