"""InFi feature networks: shapes per modality, layout properties, bad inputs."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from edgecloud.infi.features import (
    MODALITIES,
    AudioNetwork,
    FeatureNetwork,
    ImageNetwork,
    MultiModalNetwork,
    TextNetwork,
    VideoNetwork,
    as_filter_input,
    feature_network,
    input_length,
    parameter_count,
)

# modality, input_shape, options, a batch of 5 such samples
CASES: list[tuple[str, tuple[int, ...], dict[str, Any], torch.Tensor]] = [
    ("vector", (6,), {}, torch.randn(5, 6)),
    ("vector", (4, 3, 3), {"hidden": 16}, torch.randn(5, 4, 3, 3)),  # feature map
    ("image", (3, 16, 16), {}, torch.rand(5, 3, 16, 16)),
    ("video", (4, 3, 16, 16), {"frame_dim": 8}, torch.rand(5, 4, 3, 16, 16)),
    ("audio", (2000,), {"n_fft": 128, "hop_length": 64}, torch.randn(5, 2000)),
    ("audio", (33, 20), {}, torch.rand(5, 33, 20)),  # precomputed spectrogram
    ("text", (12,), {"vocab_size": 50}, torch.randint(0, 50, (5, 12))),
]


@pytest.mark.parametrize(("modality", "shape", "options", "batch"), CASES)
def test_every_modality_embeds_a_batch_as_n_by_d(
    modality: str, shape: tuple[int, ...], options: dict[str, Any], batch: torch.Tensor
) -> None:
    # Prepare
    network = feature_network(modality, shape, embedding_dim=24, seed=0, **options)

    # Execute
    embeddings = network(batch)

    # Assert
    assert isinstance(network, FeatureNetwork) and network.modality == modality
    assert network.embedding_dim == 24
    assert embeddings.shape == (5, 24) and embeddings.dtype == torch.float32
    assert bool(torch.isfinite(embeddings).all())
    # a filter must stay far cheaper than the model it guards
    assert 0 < parameter_count(network) < 10_000


def test_modalities_lists_every_factory_modality() -> None:
    assert set(MODALITIES) == {case[0] for case in CASES}


def test_parameter_count_counts_trainable_parameters_on_request() -> None:
    # Prepare
    network = ImageNetwork(channels=3, embedding_dim=8)
    total = sum(p.numel() for p in network.parameters())
    network.out.weight.requires_grad_(False)

    # Execute
    counted, trainable = parameter_count(network), parameter_count(network, True)

    # Assert
    assert counted == total
    assert trainable == total - network.out.weight.numel()


def test_image_network_accepts_any_height_and_width() -> None:
    # Prepare
    network = ImageNetwork(channels=1, embedding_dim=8, blocks=3)

    # Execute
    odd, tiny = network(torch.rand(2, 1, 15, 9)), network(torch.rand(2, 1, 1, 1))

    # Assert
    assert odd.shape == tiny.shape == (2, 8)


def test_float64_inputs_are_cast_to_the_weights_dtype() -> None:
    # Prepare
    network = ImageNetwork(channels=3, embedding_dim=8)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)

    # Execute
    embeddings = network(x)

    # Assert
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings, network(x.float()))


def test_video_embeds_each_frame_with_the_shared_image_network_in_time_order() -> None:
    # Prepare
    torch.manual_seed(0)
    network = VideoNetwork(frames=3, channels=1, embedding_dim=8, frame_dim=4)
    clips = torch.rand(2, 3, 1, 10, 10)

    # Execute
    embeddings = network(clips)
    per_frame = torch.cat([network.frame_network(clips[:, t]) for t in range(3)], 1)
    reversed_clips = network(clips.flip(1))

    # Assert
    torch.testing.assert_close(embeddings, network.out(per_frame))
    assert not torch.allclose(embeddings, reversed_clips)  # the order matters


def test_audio_waveform_and_its_spectrogram_embed_alike() -> None:
    # Prepare
    torch.manual_seed(0)
    network = AudioNetwork(embedding_dim=8, n_fft=64, hop_length=16)
    waves = torch.randn(3, 400)

    # Execute
    spectrogram = network.spectrogram(waves)
    from_waves, from_spectrogram = network(waves), network(spectrogram)

    # Assert: (N, n_fft // 2 + 1, 1 + L // hop), log1p of magnitudes
    assert spectrogram.shape == (3, 33, 26)
    assert bool((spectrogram >= 0).all())
    torch.testing.assert_close(from_waves, from_spectrogram)
    torch.testing.assert_close(network.spectrogram(torch.zeros(1, 400)).abs().max(),
                               torch.tensor(0.0))  # fmt: skip


def test_text_ignores_padding_and_embeds_empty_text_as_the_bias() -> None:
    # Prepare
    torch.manual_seed(0)
    network = TextNetwork(vocab_size=20, embedding_dim=8, token_dim=4)
    ids = torch.tensor([[3, 7, 0, 0], [5, 0, 0, 0]])
    padded = torch.cat((ids, torch.zeros(2, 5, dtype=torch.int64)), dim=1)

    # Execute
    short, long = network(ids), network(padded)
    empty = network(torch.zeros(1, 4, dtype=torch.int64))

    # Assert
    torch.testing.assert_close(short, long)
    torch.testing.assert_close(empty[0], network.out.bias)


def test_multimodal_concatenates_the_branches_then_projects() -> None:
    # Prepare
    branches: dict[str, FeatureNetwork] = {
        "camera": feature_network("image", (3, 8, 8), 6, seed=1),
        "imu": feature_network("vector", (6,), 4, seed=2),
    }
    network = MultiModalNetwork(branches, embedding_dim=10, seed=3)
    batch = {"camera": torch.rand(4, 3, 8, 8), "imu": torch.randn(4, 6)}

    # Execute
    embeddings = network(batch)
    parts = torch.cat(
        (branches["camera"](batch["camera"]), branches["imu"](batch["imu"])), 1
    )

    # Assert
    assert network.out.in_features == 10 and embeddings.shape == (4, 10)
    torch.testing.assert_close(embeddings, network.out(parts))


def test_seed_fixes_the_weights_and_leaves_the_global_rng_alone() -> None:
    # Prepare
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)

    # Execute
    first = feature_network("image", (3, 8, 8), 8, seed=5)
    drawn = torch.rand(3)
    second = feature_network("image", (3, 8, 8), 8, seed=5)
    other = feature_network("image", (3, 8, 8), 8, seed=6)

    # Assert
    assert torch.equal(drawn, expected)
    pairs = zip(first.parameters(), second.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert isinstance(first, ImageNetwork) and isinstance(other, ImageNetwork)
    assert not torch.equal(first.out.weight, other.out.weight)


IMAGE = ImageNetwork(channels=3, embedding_dim=8)
VIDEO = VideoNetwork(frames=4, channels=3, embedding_dim=8)
AUDIO = AudioNetwork(embedding_dim=8, n_fft=64, hop_length=32)
TEXT = TextNetwork(vocab_size=10, embedding_dim=8)
VECTOR = feature_network("vector", (6,), 8)
NAN_IMAGE = torch.rand(2, 3, 8, 8)
NAN_IMAGE[1, 0, 2, 2] = float("nan")


@pytest.mark.parametrize(
    ("network", "x", "message"),
    [
        # one image without its batch axis
        (IMAGE, torch.rand(3, 32, 32),
         "image input has shape (3, 32, 32); expected (N, 3, H, W)"),
        # grey images for an RGB network
        (IMAGE, torch.rand(2, 1, 8, 8),
         "image input has shape (2, 1, 8, 8); expected (N, 3, H, W)"),
        # an empty batch has nothing to embed
        (IMAGE, torch.rand(0, 3, 8, 8),
         "image input has shape (0, 3, 8, 8); expected (N, 3, H, W)"),
        # uint8 pixels must be scaled to floats first
        (IMAGE, torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
         "image input has dtype torch.uint8; expected a floating dtype (scale "
         "integer pixels or samples to floats first)"),
        # a NaN pixel
        (IMAGE, NAN_IMAGE, "image input holds NaN or inf; expected finite values"),
        # an infinite sample
        (VECTOR, torch.tensor([[0.0, 1.0, float("inf"), 0.0, 0.0, 0.0]]),
         "vector input holds NaN or inf; expected finite values"),
        # 5 features for a 6-feature network
        (VECTOR, torch.rand(2, 5), "vector input has shape (2, 5); expected (N, 6)"),
        # a window of 3 frames for a 4-frame network
        (VIDEO, torch.rand(2, 3, 3, 8, 8),
         "video input has shape (2, 3, 3, 8, 8); expected (N, 4, 3, H, W)"),
        # a video without its batch axis
        (VIDEO, torch.rand(4, 3, 8, 8),
         "video input has shape (4, 3, 8, 8); expected (N, 4, 3, H, W)"),
        # a waveform shorter than one STFT frame
        (AUDIO, torch.randn(2, 40),
         "audio input has shape (2, 40); expected (N, L) waveform with L >= 64 or "
         "(N, F, T) spectrogram"),
        # one waveform without its batch axis
        (AUDIO, torch.randn(400),
         "audio input has shape (400,); expected (N, L) waveform with L >= 64 or "
         "(N, F, T) spectrogram"),
        # token ids as floats
        (TEXT, torch.ones(2, 5),
         "text input has dtype torch.float32; expected (N, L) int64 token ids"),
        # an id past the vocabulary
        (TEXT, torch.tensor([[1, 10]]),
         "text input holds token id 10; expected ids in [0, 10)"),
        # a negative id
        (TEXT, torch.tensor([[-1, 2]]),
         "text input holds token id -1; expected ids in [0, 10)"),
        # a mapping for a single-modality network
        (IMAGE, {"image": torch.rand(2, 3, 8, 8)},
         "image input is a dict; expected a tensor (N, 3, H, W)"),
    ],
)  # fmt: skip
def test_networks_refuse_bad_inputs(
    network: FeatureNetwork, x: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        network(x)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        # a tensor where a mapping of modalities is expected
        (torch.rand(2, 6), "multimodal input is a Tensor; expected a mapping with "
         "keys ['camera', 'imu']"),
        # one modality missing
        ({"imu": torch.rand(2, 6)},
         "multimodal input has keys ['imu']; expected ['camera', 'imu']"),
        # parts of different batch sizes
        ({"camera": torch.rand(2, 3, 8, 8), "imu": torch.rand(3, 6)},
         "multimodal input has batch sizes {'camera': 2, 'imu': 3}; expected the "
         "same N"),
    ],
)  # fmt: skip
def test_multimodal_refuses_bad_inputs(batch: Any, message: str) -> None:
    network = MultiModalNetwork(
        {"camera": ImageNetwork(3, 4), "imu": feature_network("vector", (6,), 4)}, 8
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        network(batch)


def test_multimodal_refuses_bad_branches() -> None:
    # a dotted name cannot be a submodule name
    with pytest.raises(ValueError, match=r"branch name 'a\.b' is invalid"):
        MultiModalNetwork({"a.b": ImageNetwork(3)})
    # a plain nn.Module has no embedding_dim or input checks
    with pytest.raises(ValueError, match="branch 'x' is a Linear; expected a Feat"):
        MultiModalNetwork({"x": torch.nn.Linear(2, 2)})  # type: ignore[dict-item]
    # no modality at all
    with pytest.raises(ValueError, match="branches is empty"):
        MultiModalNetwork({})


@pytest.mark.parametrize(
    ("modality", "shape", "kwargs", "message"),
    [
        # not a modality
        ("lidar", (3,), {},
         "modality is 'lidar'; expected one of vector, image, video, audio, text"),
        # an image shape without its channel axis
        ("image", (32, 32), {}, "image input_shape is (32, 32); expected (C, H, W)"),
        # a zero-sized axis
        ("image", (3, 0, 8), {}, "image input_shape is (3, 0, 8); expected (C, H, W)"),
        # a video needs (T, C, H, W)
        ("video", (3, 8, 8), {}, "video input_shape is (3, 8, 8); expected "
         "(T, C, H, W)"),
        # audio is 1-D or 2-D
        ("audio", (2, 3, 4), {}, "audio input_shape is (2, 3, 4); expected (L,) "
         "waveform or (F, T) spectrogram"),
        # a waveform shorter than the STFT frame
        ("audio", (100,), {}, "audio input_shape is (100,); expected a waveform of "
         "at least n_fft = 256 samples"),
        # the text network needs its vocabulary size
        ("text", (12,), {}, "text modality needs option vocab_size; expected the "
         "number of token ids (padding id 0 included)"),
        # only padding and no token
        ("text", (12,), {"vocab_size": 1}, "vocab_size is 1; expected an integer "
         ">= 2 (padding id 0 and at least one token)"),
        # an option of another modality
        ("image", (3, 8, 8), {"vocab_size": 10}, "option(s) vocab_size not "
         "accepted for modality 'image'; expected some of filters, blocks"),
        # an embedding of width 0
        ("vector", (6,), {"embedding_dim": 0}, "embedding_dim is 0; expected a "
         "positive integer"),
        # an empty vector shape
        ("vector", (), {}, "vector input_shape is (); expected (d1, ..., dk) with "
         "every d >= 1"),
        # a bare int instead of a shape tuple
        ("vector", 6, {}, "vector input_shape is 6; expected a tuple of sizes "
         "without the batch axis"),
        # zero residual blocks leave no features to pool
        ("image", (3, 8, 8), {"blocks": 0}, "blocks is 0; expected a positive "
         "integer"),
    ],
)  # fmt: skip
def test_factory_refuses_bad_specs(
    modality: str, shape: tuple[int, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        feature_network(modality, shape, **kwargs)


def test_as_filter_input_converts_numpy_batches() -> None:
    # Prepare
    images = np.zeros((2, 3, 4, 4))  # float64
    ids = np.ones((2, 5), dtype=np.int32)

    # Execute
    single = as_filter_input(images)
    parts: dict[str, npt.NDArray[Any]] = {"image": images, "text": ids}
    mapping = as_filter_input(parts)

    # Assert
    assert isinstance(single, torch.Tensor) and single.dtype == torch.float32
    assert isinstance(mapping, dict)
    assert mapping["image"].dtype == torch.float32
    assert mapping["text"].dtype == torch.int64


def test_input_length_refuses_mismatched_parts() -> None:
    # parts of one multi-modal batch must have the same length
    with pytest.raises(ValueError, match=r"^x has lengths \{'a': 2, 'b': 3\}"):
        input_length("x", {"a": torch.zeros(2, 1), "b": torch.zeros(3, 1)})
