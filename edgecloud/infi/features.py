"""InFi feature networks: one small embedding network per input modality.

InFi §3.4.1 ("全模态特征网络"): each modality gets its own network ``g_mod``
mapping a batch of inputs to ``(N, D)`` embeddings, and a multi-modal input
concatenates the embeddings of its parts (§3.4.2). The networks must stay far
cheaper than the model they guard, so the defaults are a few thousand
parameters (:func:`parameter_count`).

=========  ==========================  ==============================================
modality   input (batch first)         network
=========  ==========================  ==============================================
vector     ``(N, *shape)`` float       flatten -> FC -> ReLU -> FC (sensor signals,
                                       intermediate feature maps)
image      ``(N, C, H, W)`` float      separable-conv residual blocks -> global
                                       max-pool -> FC
video      ``(N, T, C, H, W)`` float   the image network on every frame -> concat
                                       the ``T`` frame embeddings -> FC
audio      ``(N, L)`` float waveform   log-magnitude STFT -> the image network with
           or ``(N, F, T)``            one channel
text       ``(N, L)`` int64 ids        embedding (id 0 = padding) -> mean over the
                                       non-pad tokens -> FC
=========  ==========================  ==============================================

Where the thesis and the authors' code are silent or disagree, this module chooses:

- **No activation on the embedding.** The thesis ends the image and text networks
  with a sigmoid FC layer; the authors' code uses ReLU units. Both throw away
  range (saturated or dead units); the classifier of :mod:`edgecloud.infi.siamese`
  is linear in ``|e1 - e2|`` and learns each dimension's scale, so a plain linear
  output loses nothing.
- **GroupNorm(1, C) as the layer norm of conv maps.** It normalises each sample
  over all of its ``(C, H, W)`` activations (the "LN" of the thesis' ConvStep)
  with a per-channel affine, so it does not tie the network to one ``H x W``
  like ``nn.LayerNorm((C, H, W))`` would (audio spectrograms and images of any
  size go through the same weights) and costs ``2C`` parameters. Keras'
  ``LayerNormalization()`` in the authors' code normalises each pixel over its
  channels only; with 8 channels per pixel that statistic is noisy and it maps a
  dark pixel and a bright pixel of the same colour to the same vector.
- **No ReLU on the raw input.** The thesis' ConvStep is ``LN(SepConv(ReLU(x)))``;
  on the first block that would clip every negative value of a normalised image
  or a signed spectrogram, so the first block convolves the input as it is.
- **One image network shared by all frames of a video** (the authors' code
  builds an unshared tower per frame): ``T`` times fewer parameters, and the
  per-frame embeddings, concatenated in time order, keep the temporal layout.
- **Audio as ``log1p(|STFT|)``**: silence maps to 0 (so the null input of the
  skip filter is a clean all-zero spectrogram) without an ``eps`` to tune.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgecloud.validation import check_positive_int

FilterInput: TypeAlias = torch.Tensor | Mapping[str, torch.Tensor]
"""A batch for a feature network: one tensor, or modality name -> tensor."""

InputLike: TypeAlias = npt.ArrayLike | Mapping[str, npt.ArrayLike] | FilterInput
"""A batch as numpy arrays or tensors (see :func:`as_filter_input`)."""

MODALITIES = ("vector", "image", "video", "audio", "text")


class FeatureNetwork(nn.Module):
    """Base of the InFi feature networks: a batch in, ``(N, D)`` embeddings out.

    Subclasses set :attr:`modality` and :attr:`embedding_dim`, check (and convert)
    the input in :meth:`_validate` and compute the embeddings in :meth:`_embed`;
    :meth:`forward` runs both, so every network refuses a malformed batch with a
    one-line ``ValueError`` before doing any work.
    """

    modality: str
    embedding_dim: int

    def forward(self, x: FilterInput) -> torch.Tensor:
        """Embeddings ``(N, D)`` of the batch ``x`` (checked first)."""
        return self._embed(self._validate(x))

    def _validate(self, x: FilterInput) -> torch.Tensor:
        raise NotImplementedError

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _float_input(self, x: FilterInput, rank: int, expected: str) -> torch.Tensor:
        """``x`` as a finite tensor of rank ``rank`` in the weights' float dtype."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(
                f"{self.modality} input is a {type(x).__name__}; expected a tensor "
                f"{expected}"
            )
        if x.dim() != rank or 0 in x.shape:
            raise ValueError(
                f"{self.modality} input has shape {tuple(x.shape)}; expected {expected}"
            )
        if not x.is_floating_point():
            raise ValueError(
                f"{self.modality} input has dtype {x.dtype}; expected a floating "
                "dtype (scale integer pixels or samples to floats first)"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                f"{self.modality} input holds NaN or inf; expected finite values"
            )
        return x.to(self._dtype())

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


# --- vector / feature map -----------------------------------------------------


class VectorNetwork(FeatureNetwork):
    """Sensor signals and feature maps: flatten -> FC -> ReLU -> FC (§3.4.1).

    Parameters
    ----------
    input_shape : tuple[int, ...]
        Shape of one sample (``(6,)`` for a 6-axis IMU reading, ``(C, H, W)`` for
        a feature map); flattened to ``prod(input_shape)`` features.
    embedding_dim : int
        Output width ``D``.
    hidden : int
        Width of the hidden FC layer.
    """

    def __init__(
        self, input_shape: tuple[int, ...], embedding_dim: int = 64, hidden: int = 64
    ) -> None:
        super().__init__()
        _check_shape("vector", input_shape, None, "(d1, ..., dk) with every d >= 1")
        check_positive_int("embedding_dim", embedding_dim)
        check_positive_int("hidden", hidden)
        self.modality = "vector"
        self.embedding_dim = embedding_dim
        self.input_shape = tuple(int(d) for d in input_shape)
        self.hidden = nn.Linear(math.prod(self.input_shape), hidden)
        self.out = nn.Linear(hidden, embedding_dim)

    def _validate(self, x: FilterInput) -> torch.Tensor:
        expected = "(N, " + ", ".join(map(str, self.input_shape)) + ")"
        arr = self._float_input(x, 1 + len(self.input_shape), expected)
        if tuple(arr.shape[1:]) != self.input_shape:
            raise ValueError(
                f"vector input has shape {tuple(arr.shape)}; expected {expected}"
            )
        return arr

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.out(F.relu(self.hidden(x.flatten(1))))  # (N, D)
        return out


# --- image --------------------------------------------------------------------


class _ConvStep(nn.Module):
    """``ConvStep(x) = LN(SepConv(ReLU(x)))``: depthwise + pointwise conv, norm."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, relu: bool
    ) -> None:
        super().__init__()
        self.relu = relu
        # depthwise: one k x k filter per input channel; "same" padding
        self.depthwise = nn.Conv2d(
            cin, cin, kernel, stride=stride, padding=kernel // 2, groups=cin, bias=False
        )
        self.pointwise = nn.Conv2d(cin, cout, 1)
        self.norm = nn.GroupNorm(1, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu:
            x = F.relu(x)
        out: torch.Tensor = self.norm(self.pointwise(self.depthwise(x)))
        return out


class _ResidualBlock(nn.Module):
    """``ConvRes(x) = MaxPool(c2(c1(x))) + ConvStep_1x1,stride2(x)``: halves H, W.

    Both branches give ``ceil(H / 2) x ceil(W / 2)``: the 3x3/2 max-pool with
    padding 1 and the strided 1x1 shortcut agree for odd sizes too.
    """

    def __init__(self, cin: int, cout: int, relu_input: bool) -> None:
        super().__init__()
        self.c1 = _ConvStep(cin, cout, 3, 1, relu_input)
        self.c2 = _ConvStep(cout, cout, 3, 1, True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.shortcut = _ConvStep(cin, cout, 1, 2, relu_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.pool(self.c2(self.c1(x))) + self.shortcut(x)
        return out


class ImageNetwork(FeatureNetwork):
    """Images: separable-conv residual blocks, global max-pool, FC (§3.4.1).

    ``blocks`` residual blocks, the first with ``filters`` channels and each next
    one with twice as many, every block halving the height and width; then the
    maximum of each channel over the map and one FC layer to ``D``. Works for any
    ``H x W`` (the channel count is fixed).

    Parameters
    ----------
    channels : int
        Input channels ``C`` (3 for RGB, 1 for a spectrogram).
    embedding_dim : int
        Output width ``D``.
    filters : int
        Channels of the first block.
    blocks : int
        Number of residual blocks (the thesis uses two).
    """

    def __init__(
        self, channels: int, embedding_dim: int = 64, filters: int = 8, blocks: int = 2
    ) -> None:
        super().__init__()
        for name, value in (
            ("channels", channels),
            ("embedding_dim", embedding_dim),
            ("filters", filters),
            ("blocks", blocks),
        ):
            check_positive_int(name, value)
        self.modality = "image"
        self.embedding_dim = embedding_dim
        self.channels = channels
        widths = [channels] + [filters * 2**i for i in range(blocks)]
        self.blocks = nn.Sequential(
            *(
                _ResidualBlock(cin, cout, relu_input=i > 0)
                for i, (cin, cout) in enumerate(itertools.pairwise(widths))
            )
        )
        self.out = nn.Linear(widths[-1], embedding_dim)

    def _validate(self, x: FilterInput) -> torch.Tensor:
        expected = f"(N, {self.channels}, H, W)"
        arr = self._float_input(x, 4, expected)
        if arr.shape[1] != self.channels:
            raise ValueError(
                f"image input has shape {tuple(arr.shape)}; expected {expected}"
            )
        return arr

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.blocks(x)  # (N, filters * 2^(blocks-1), H', W')
        out: torch.Tensor = self.out(maps.amax(dim=(2, 3)))  # (N, D)
        return out


# --- video --------------------------------------------------------------------


class VideoNetwork(FeatureNetwork):
    """Windows of frames: the image network per frame, concatenated, FC (§3.4.1).

    Parameters
    ----------
    frames : int
        Frames per window ``T``.
    channels : int
        Channels per frame ``C``.
    embedding_dim : int
        Output width ``D``.
    frame_dim : int | None
        Width of each frame's embedding (``None``: ``embedding_dim``).
    filters, blocks : int
        Of the shared per-frame :class:`ImageNetwork`.
    """

    def __init__(
        self,
        frames: int,
        channels: int,
        embedding_dim: int = 64,
        frame_dim: int | None = None,
        filters: int = 8,
        blocks: int = 2,
    ) -> None:
        super().__init__()
        check_positive_int("frames", frames)
        check_positive_int("embedding_dim", embedding_dim)
        frame_dim = embedding_dim if frame_dim is None else frame_dim
        check_positive_int("frame_dim", frame_dim)
        self.modality = "video"
        self.embedding_dim = embedding_dim
        self.frames = frames
        self.channels = channels
        self.frame_network = ImageNetwork(channels, frame_dim, filters, blocks)
        self.out = nn.Linear(frames * frame_dim, embedding_dim)

    def _validate(self, x: FilterInput) -> torch.Tensor:
        expected = f"(N, {self.frames}, {self.channels}, H, W)"
        arr = self._float_input(x, 5, expected)
        if arr.shape[1:3] != (self.frames, self.channels):
            raise ValueError(
                f"video input has shape {tuple(arr.shape)}; expected {expected}"
            )
        return arr

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[:2]
        # every frame through the same image network: (N T, C, H, W) -> (N T, d)
        per_frame = self.frame_network._embed(x.flatten(0, 1))
        out: torch.Tensor = self.out(per_frame.reshape(n, t * per_frame.shape[1]))
        return out  # (N, D)


# --- audio --------------------------------------------------------------------


class AudioNetwork(FeatureNetwork):
    """Audio: log-magnitude spectrogram, then the image network (§3.4.1).

    Accepts a waveform batch ``(N, L)``, turned into ``log1p(|STFT|)`` of shape
    ``(N, n_fft // 2 + 1, 1 + L // hop_length)`` (Hann window, centred frames), or
    a precomputed spectrogram batch ``(N, F, T)`` of any size, used as it is (give
    it the same log compression, for example :meth:`spectrogram`'s).

    Parameters
    ----------
    embedding_dim : int
        Output width ``D``.
    n_fft : int
        STFT frame length in samples (``n_fft // 2 + 1`` frequency bins).
    hop_length : int
        Samples between the starts of two frames.
    filters, blocks : int
        Of the one-channel :class:`ImageNetwork`.
    """

    _window: torch.Tensor

    def __init__(
        self,
        embedding_dim: int = 64,
        n_fft: int = 256,
        hop_length: int = 128,
        filters: int = 8,
        blocks: int = 2,
    ) -> None:
        super().__init__()
        check_positive_int("n_fft", n_fft)
        check_positive_int("hop_length", hop_length)
        if n_fft < 2:
            raise ValueError(f"n_fft is {n_fft}; expected at least 2")
        self.modality = "audio"
        self.embedding_dim = embedding_dim
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.spectrogram_network = ImageNetwork(1, embedding_dim, filters, blocks)
        self.register_buffer("_window", torch.hann_window(n_fft), persistent=False)

    def spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """``log1p(|STFT|)`` ``(N, n_fft // 2 + 1, frames)`` of a ``(N, L)`` batch."""
        stft = torch.stft(
            waveform,
            self.n_fft,
            hop_length=self.hop_length,
            window=self._window.to(waveform.dtype),
            center=True,
            return_complex=True,
        )  # (N, F, frames) complex
        return torch.log1p(stft.abs())

    def _validate(self, x: FilterInput) -> torch.Tensor:
        expected = f"(N, L) waveform with L >= {self.n_fft} or (N, F, T) spectrogram"
        if isinstance(x, torch.Tensor) and x.dim() == 2:
            arr = self._float_input(x, 2, expected)
            if arr.shape[1] < self.n_fft:
                raise ValueError(
                    f"audio input has shape {tuple(arr.shape)}; expected {expected}"
                )
            return self.spectrogram(arr)
        return self._float_input(x, 3, expected)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        # the spectrogram as a one-channel image: (N, 1, F, T)
        return self.spectrogram_network._embed(x.unsqueeze(1))


# --- text ---------------------------------------------------------------------


class TextNetwork(FeatureNetwork):
    """Token-id sequences: embedding, mean over the non-pad tokens, FC (§3.4.1).

    Id 0 is padding: its embedding is fixed at zero and it is left out of the
    mean, so padding a sequence does not change its embedding, and an all-padding
    sequence (the skip filter's null input) embeds as the FC layer's bias.

    Parameters
    ----------
    vocab_size : int
        Number of token ids, padding id 0 included (ids in ``[0, vocab_size)``).
    embedding_dim : int
        Output width ``D``.
    token_dim : int
        Width of the token embeddings.
    """

    def __init__(
        self, vocab_size: int, embedding_dim: int = 64, token_dim: int = 32
    ) -> None:
        super().__init__()
        check_positive_int("embedding_dim", embedding_dim)
        check_positive_int("token_dim", token_dim)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int | np.integer):
            raise ValueError(
                f"vocab_size is {vocab_size!r}; expected an integer >= 2 "
                "(padding id 0 and at least one token)"
            )
        if vocab_size < 2:
            raise ValueError(
                f"vocab_size is {vocab_size}; expected an integer >= 2 "
                "(padding id 0 and at least one token)"
            )
        self.modality = "text"
        self.embedding_dim = embedding_dim
        self.vocab_size = vocab_size
        self.tokens = nn.Embedding(vocab_size, token_dim, padding_idx=0)
        self.out = nn.Linear(token_dim, embedding_dim)

    def _validate(self, x: FilterInput) -> torch.Tensor:
        expected = "(N, L) int64 token ids"
        if not isinstance(x, torch.Tensor):
            raise ValueError(
                f"text input is a {type(x).__name__}; expected a tensor {expected}"
            )
        if x.dim() != 2 or 0 in x.shape:
            raise ValueError(
                f"text input has shape {tuple(x.shape)}; expected {expected}"
            )
        if x.dtype != torch.int64:
            raise ValueError(f"text input has dtype {x.dtype}; expected {expected}")
        low, high = int(x.min()), int(x.max())
        if low < 0 or high >= self.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"text input holds token id {bad}; expected ids in "
                f"[0, {self.vocab_size})"
            )
        return x

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(x)  # (N, L, token_dim); padding rows are zero
        count = (x != 0).sum(dim=1, keepdim=True).clamp(min=1)  # (N, 1)
        mean = tokens.sum(dim=1) / count.to(tokens.dtype)  # (N, token_dim)
        out: torch.Tensor = self.out(mean)  # (N, D)
        return out


# --- multi-modal --------------------------------------------------------------


class MultiModalNetwork(FeatureNetwork):
    """Several modalities at once: embed each, concatenate, FC to ``D`` (§3.4.2).

    The input is a mapping from the branch names given here to their batches
    (same ``N`` each); every branch checks its own part.

    Parameters
    ----------
    branches : Mapping[str, FeatureNetwork]
        One feature network per input name (for example ``{"camera":
        feature_network("image", (3, 32, 32)), "imu": feature_network("vector",
        (6,))}``). Names are non-empty and contain no ``"."``.
    embedding_dim : int
        Output width ``D``.
    seed : int | None
        Seed of the fusion layer's initialisation (the global torch RNG is left
        untouched); ``None`` draws from the global RNG.
    """

    def __init__(
        self,
        branches: Mapping[str, FeatureNetwork],
        embedding_dim: int = 64,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("embedding_dim", embedding_dim)
        if not branches:
            raise ValueError("branches is empty; expected at least one modality")
        for name, branch in branches.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(
                    f"branch name {name!r} is invalid; expected a non-empty string "
                    "without '.'"
                )
            if not isinstance(branch, FeatureNetwork):
                raise ValueError(
                    f"branch {name!r} is a {type(branch).__name__}; expected a "
                    "FeatureNetwork"
                )
        self.modality = "multimodal"
        self.embedding_dim = embedding_dim
        self.branches = nn.ModuleDict(dict(branches))
        width = sum(b.embedding_dim for b in branches.values())
        with _seeded(seed):
            self.out = nn.Linear(width, embedding_dim)

    def forward(self, x: FilterInput) -> torch.Tensor:
        """Embeddings ``(N, D)`` of the batch ``x`` (name -> tensor)."""
        names = sorted(self.branches.keys())
        if not isinstance(x, Mapping):
            raise ValueError(
                f"multimodal input is a {type(x).__name__}; expected a mapping with "
                f"keys {names}"
            )
        if sorted(x.keys()) != names:
            raise ValueError(
                f"multimodal input has keys {sorted(x.keys())}; expected {names}"
            )
        sizes = {name: _batch_size(x[name]) for name in names}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"multimodal input has batch sizes {sizes}; expected the same N"
            )
        parts = [branch(x[name]) for name, branch in self.branches.items()]
        out: torch.Tensor = self.out(torch.cat(parts, dim=1))  # (N, sum D_i) -> (N, D)
        return out


def _batch_size(x: object) -> int | None:
    return int(x.shape[0]) if isinstance(x, torch.Tensor) and x.dim() > 0 else None


# --- factory ------------------------------------------------------------------

_OPTIONS: dict[str, tuple[str, ...]] = {
    "vector": ("hidden",),
    "image": ("filters", "blocks"),
    "video": ("frame_dim", "filters", "blocks"),
    "audio": ("n_fft", "hop_length", "filters", "blocks"),
    "text": ("vocab_size", "token_dim"),
}


def feature_network(
    modality: str,
    input_shape: tuple[int, ...],
    embedding_dim: int = 64,
    *,
    seed: int | None = None,
    **options: Any,
) -> FeatureNetwork:
    """Build the feature network of one modality for samples of ``input_shape``.

    Parameters
    ----------
    modality : str
        One of :data:`MODALITIES`.
    input_shape : tuple[int, ...]
        Shape of one sample, without the batch axis: ``(d1, ..., dk)`` for
        ``vector``, ``(C, H, W)`` for ``image``, ``(T, C, H, W)`` for ``video``,
        ``(L,)`` (waveform) or ``(F, T)`` (spectrogram) for ``audio``, ``(L,)``
        for ``text``.
    embedding_dim : int
        Output width ``D``.
    seed : int | None
        Seed of the weight initialisation (the global torch RNG is left
        untouched); ``None`` draws from the global RNG.
    **options
        The modality's own settings: ``hidden`` (vector); ``filters``, ``blocks``
        (image, video, audio); ``frame_dim`` (video); ``n_fft``, ``hop_length``
        (audio); ``vocab_size`` (required), ``token_dim`` (text).

    Returns
    -------
    FeatureNetwork
        Maps a batch to ``(N, embedding_dim)`` embeddings.
    """
    if modality not in _OPTIONS:
        raise ValueError(
            f"modality is {modality!r}; expected one of {', '.join(MODALITIES)}"
        )
    unknown = sorted(set(options) - set(_OPTIONS[modality]))
    if unknown:
        raise ValueError(
            f"option(s) {', '.join(unknown)} not accepted for modality {modality!r}; "
            f"expected some of {', '.join(_OPTIONS[modality])}"
        )
    if not isinstance(input_shape, tuple | list):
        raise ValueError(
            f"{modality} input_shape is {input_shape!r}; expected a tuple of sizes "
            "without the batch axis"
        )
    shape = tuple(int(d) if isinstance(d, np.integer) else d for d in input_shape)
    with _seeded(seed):
        if modality == "vector":
            _check_shape(modality, shape, None, "(d1, ..., dk) with every d >= 1")
            return VectorNetwork(shape, embedding_dim, **options)
        if modality == "image":
            _check_shape(modality, shape, 3, "(C, H, W)")
            return ImageNetwork(shape[0], embedding_dim, **options)
        if modality == "video":
            _check_shape(modality, shape, 4, "(T, C, H, W)")
            return VideoNetwork(shape[0], shape[1], embedding_dim, **options)
        if modality == "audio":
            return _audio_network(shape, embedding_dim, options)
        _check_shape(modality, shape, 1, "(L,)")
        if "vocab_size" not in options:
            raise ValueError(
                "text modality needs option vocab_size; expected the number of "
                "token ids (padding id 0 included)"
            )
        return TextNetwork(embedding_dim=embedding_dim, **options)


def _audio_network(
    shape: tuple[int, ...], embedding_dim: int, options: Mapping[str, Any]
) -> AudioNetwork:
    expected = "(L,) waveform or (F, T) spectrogram"
    if len(shape) not in (1, 2):
        raise ValueError(f"audio input_shape is {shape}; expected {expected}")
    _check_shape("audio", shape, len(shape), expected)
    network = AudioNetwork(embedding_dim, **options)
    if len(shape) == 1 and shape[0] < network.n_fft:
        raise ValueError(
            f"audio input_shape is {shape}; expected a waveform of at least "
            f"n_fft = {network.n_fft} samples"
        )
    return network


# --- batches ------------------------------------------------------------------


def as_filter_input(x: InputLike) -> FilterInput:
    """A numpy batch (or mapping of them) as tensors: floats -> float32, ints -> int64.

    Tensors pass through unchanged; other dtypes (bool, strings) are converted as
    torch does, and the feature network then refuses them with its own message.
    """
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, Mapping):
        return {str(k): _as_tensor(v) for k, v in x.items()}
    return _as_tensor(x)


def _as_tensor(x: npt.ArrayLike | torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    arr = np.asarray(x)
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32, copy=False)
    elif np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.int64, copy=False)
    return torch.from_numpy(np.ascontiguousarray(arr))


def input_length(name: str, x: FilterInput) -> int:
    """Number of samples ``N`` of a batch; every part of a mapping must agree."""
    if isinstance(x, torch.Tensor):
        if x.dim() == 0:
            raise ValueError(f"{name} is a scalar; expected a batch (N, ...)")
        return int(x.shape[0])
    if not x:
        raise ValueError(f"{name} is an empty mapping; expected name -> batch")
    lengths = {key: input_length(f"{name}[{key!r}]", part) for key, part in x.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{name} has lengths {lengths}; expected the same N")
    return next(iter(lengths.values()))


def take_rows(x: FilterInput, index: torch.Tensor | slice) -> FilterInput:
    """Rows ``index`` of a batch (of every part of a mapping)."""
    if isinstance(x, torch.Tensor):
        return x[index]
    return {key: part[index] for key, part in x.items()}


def parameter_count(network: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``network`` (only those with gradients if asked)."""
    return sum(
        p.numel() for p in network.parameters() if p.requires_grad or not trainable_only
    )


# --- checks -------------------------------------------------------------------


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed the layers built inside, leaving the global torch RNG as it was."""
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def _check_shape(
    modality: str, shape: tuple[int, ...], rank: int | None, expected: str
) -> None:
    """Raise a ValueError unless ``shape`` has ``rank`` positive integer sizes."""
    ok = (rank is None and len(shape) >= 1) or len(shape) == rank
    ok = ok and all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 1
        for d in shape
    )
    if not ok:
        raise ValueError(f"{modality} input_shape is {shape}; expected {expected}")
