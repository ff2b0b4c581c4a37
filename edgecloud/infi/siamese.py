"""The InFi input filter: a Siamese feature network and a distance classifier.

InFi §3.3.1 and §3.4.3 unify the two ways of filtering an input ``x`` before an
expensive model ``h``:

- **reuse**: ``x`` may take the cached result of an earlier input ``x'`` when the
  two are close in a learned embedding space. Both go through the same feature
  network ``g_mod`` (Siamese weights) and a classifier scores the element-wise
  distance of the embeddings::

      reuse(x, x') = sigmoid(w . |g(x) - g(x')| + b)       w: (tasks, D), b: (tasks,)

- **skip**: "skipping is reusing the NONE result of h(0)". The all-zeros input
  ``0`` stands for "nothing there" (a black frame, silence, an empty text: its
  result is NONE), so ``skip(x) = reuse(x, 0)``: the same classifier on
  ``|g(x) - g(0)|``, with ``g(0)`` recomputed from the current weights on every
  call (it moves while the network trains).

Sign convention: both outputs are the probability that ``x`` is **redundant**
(1 = skip it, or reuse the cached result). The thesis reads the skip output as
"x is *not* redundant" and trains reuse on the *distance* label
``1(y_i != y_j)``; here the labels are flipped (``1(y_i == y_j)``, 1 = skip) so
that one threshold direction serves both filters, and ``sigmoid(b)``, the
output at distance 0, is the probability that identical inputs are redundant.
Skip and reuse filters share this architecture but are trained separately
(:mod:`edgecloud.infi.training`). With ``tasks > 1`` the feature network is
shared and each task has its own row of ``w`` (§3.4.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from edgecloud.infi.features import (
    FeatureNetwork,
    FilterInput,
    InputLike,
    as_filter_input,
    input_length,
    take_rows,
)


def null_input(like: FilterInput) -> FilterInput:
    """The all-zeros input ``0`` of the skip filter, one sample shaped like ``like``.

    ``(1, *like.shape[1:])`` zeros of ``like``'s dtype (for every part of a
    mapping): a black image or video, silence, all-padding token ids.
    """
    if isinstance(like, torch.Tensor):
        return torch.zeros((1, *like.shape[1:]), dtype=like.dtype, device=like.device)
    return {
        key: torch.zeros((1, *part.shape[1:]), dtype=part.dtype, device=part.device)
        for key, part in like.items()
    }


class InputFilter(nn.Module):
    """InFi-Skip / InFi-Reuse: feature network + ``sigmoid(w . |e1 - e2| + b)``.

    Parameters
    ----------
    features : FeatureNetwork
        The modality's (or the multi-modal) embedding network ``g``, shared by
        both sides of a pair.
    num_tasks : int
        Number of black-box tasks filtered at once (one output each).
    dropout : float
        Dropout on the embeddings while training (the thesis puts a dropout layer
        after the feature network's last FC layer; its code uses 0.5). 0 turns it
        off; it is inactive in eval mode and in every ``predict_*`` call.
    seed : int | None
        Seed of the classifier's initialisation (the global torch RNG is left
        untouched); ``None`` draws from the global RNG.
    """

    def __init__(
        self,
        features: FeatureNetwork,
        num_tasks: int = 1,
        dropout: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(features, FeatureNetwork):
            raise ValueError(
                f"features is a {type(features).__name__}; expected a FeatureNetwork"
            )
        if (
            isinstance(num_tasks, bool)
            or not isinstance(num_tasks, int | np.integer)
            or num_tasks < 1
        ):
            raise ValueError(f"num_tasks is {num_tasks!r}; expected a positive integer")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout is {dropout}; expected a number in [0, 1)")
        self.features = features
        self.embedding_dim = features.embedding_dim
        self.num_tasks = num_tasks
        self.dropout = nn.Dropout(dropout)
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.classifier = nn.Linear(self.embedding_dim, num_tasks)

    # --- embeddings and the classifier ------------------------------------------

    def embed(self, x: FilterInput) -> torch.Tensor:
        """Embeddings ``(N, D)`` of a batch (dropout applies in train mode)."""
        out: torch.Tensor = self.dropout(self.features(x))
        return out

    def forward(self, x: FilterInput) -> torch.Tensor:
        """Same as :meth:`embed`: one branch of the Siamese pair."""
        return self.embed(x)

    def reuse_logits(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores ``w . |e1 - e2| + b`` of ``(..., D)`` embeddings.

        ``e1`` and ``e2`` broadcast against each other (``(N, 1, D)`` against
        ``(1, M, D)`` scores every new input against every cached key); the result
        is ``(..., num_tasks)``.
        """
        d = self.embedding_dim
        for name, e in (("e1", e1), ("e2", e2)):
            if e.dim() < 1 or e.shape[-1] != d:
                raise ValueError(
                    f"{name} has shape {tuple(e.shape)}; expected (..., {d})"
                )
            if not bool(torch.isfinite(e).all()):
                raise ValueError(f"{name} holds NaN or inf; expected finite values")
        try:
            distance = (e1 - e2).abs()  # (..., D)
        except RuntimeError as err:
            raise ValueError(
                f"e1 has shape {tuple(e1.shape)} and e2 {tuple(e2.shape)}; expected "
                "shapes that broadcast"
            ) from err
        out: torch.Tensor = self.classifier(distance)  # (..., tasks)
        return out

    def reuse_probability(self, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        """Probabilities ``(..., num_tasks)`` that the two inputs share a result."""
        return torch.sigmoid(self.reuse_logits(e1, e2))

    def pair_logits(self, x1: FilterInput, x2: FilterInput) -> torch.Tensor:
        """Reuse scores ``(N, num_tasks)`` of the input pairs ``(x1[i], x2[i])``."""
        n, m = input_length("x1", x1), input_length("x2", x2)
        if m != n:
            raise ValueError(f"x2 has {m} samples; expected {n} like x1")
        return self.reuse_logits(self.embed(x1), self.embed(x2))

    # --- skip as reuse of h(0) ----------------------------------------------------

    def null_embedding(self, like: FilterInput) -> torch.Tensor:
        """Embedding ``(1, D)`` of the all-zeros input shaped like ``like``."""
        return self.embed(null_input(like))

    def skip_logits(self, x: FilterInput) -> torch.Tensor:
        """Pre-sigmoid skip scores ``(N, num_tasks)``: ``reuse_logits(g(x), g(0))``.

        ``g(0)`` comes from the current weights on every call, so training moves
        the anchor together with the embeddings (and gradients flow through both).
        """
        embeddings = self.embed(x)  # (N, D); checks x before g(0) is computed
        return self.reuse_logits(embeddings, self.null_embedding(x))  # vs (1, D)

    def skip_probability(self, x: FilterInput) -> torch.Tensor:
        """Probabilities ``(N, num_tasks)`` that ``x`` is redundant (skip it)."""
        return torch.sigmoid(self.skip_logits(x))

    # --- numpy in, numpy out ------------------------------------------------------

    def predict_embeddings(
        self,
        x: InputLike,
        batch_size: int = 256,
    ) -> npt.NDArray[np.float32]:
        """Embeddings ``(N, D)`` float32, in eval mode and without autograd.

        Parameters
        ----------
        x : array_like or mapping of them
            A batch in the feature network's layout (floats become float32,
            integers int64).
        batch_size : int
            Samples per forward pass (bounds the memory).

        Returns
        -------
        numpy.ndarray
            ``(N, embedding_dim)`` float32.
        """
        return self._predict(x, batch_size, self.embed)

    def predict_skip(
        self,
        x: InputLike,
        batch_size: int = 256,
    ) -> npt.NDArray[np.float32]:
        """Skip probabilities ``(N, num_tasks)`` float32 (1 = redundant).

        Parameters
        ----------
        x : array_like or mapping of them
            A batch in the feature network's layout.
        batch_size : int
            Samples per forward pass.

        Returns
        -------
        numpy.ndarray
            ``(N, num_tasks)`` float32 in (0, 1).
        """
        return self._predict(x, batch_size, self.skip_probability)

    def predict_reuse(
        self, e1: npt.ArrayLike, e2: npt.ArrayLike
    ) -> npt.NDArray[np.float32]:
        """Reuse probabilities ``(..., num_tasks)`` float32 of broadcasting embeddings.

        Parameters
        ----------
        e1, e2 : array_like
            ``(..., D)`` embeddings from :meth:`predict_embeddings` (a cache's keys,
            for instance); they broadcast against each other.

        Returns
        -------
        numpy.ndarray
            ``(..., num_tasks)`` float32 in (0, 1).
        """
        t1 = torch.from_numpy(np.asarray(e1, dtype=np.float32))
        t2 = torch.from_numpy(np.asarray(e2, dtype=np.float32))
        with inference_mode(self):
            out: npt.NDArray[np.float32] = self.reuse_probability(t1, t2).numpy()
        return out

    def predict_pair_reuse(
        self,
        x1: InputLike,
        x2: InputLike,
        batch_size: int = 256,
    ) -> npt.NDArray[np.float32]:
        """Reuse probabilities ``(N, num_tasks)`` float32 of raw input pairs.

        Parameters
        ----------
        x1, x2 : array_like or mapping of them
            Two batches of ``N`` inputs; pair ``i`` is ``(x1[i], x2[i])``.
        batch_size : int
            Samples per forward pass.

        Returns
        -------
        numpy.ndarray
            ``(N, num_tasks)`` float32 in (0, 1).
        """
        first, second = as_filter_input(x1), as_filter_input(x2)
        n, m = input_length("x1", first), input_length("x2", second)
        if m != n:
            raise ValueError(f"x2 has {m} samples; expected {n} like x1")
        e1 = self.predict_embeddings(first, batch_size)
        e2 = self.predict_embeddings(second, batch_size)
        return self.predict_reuse(e1, e2)

    def _predict(
        self,
        x: InputLike,
        batch_size: int,
        fn: Callable[[FilterInput], torch.Tensor],
    ) -> npt.NDArray[np.float32]:
        """``fn`` over ``x`` in chunks of ``batch_size``, as one float32 array."""
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int | np.integer)
            or batch_size < 1
        ):
            raise ValueError(
                f"batch_size is {batch_size!r}; expected a positive integer"
            )
        batch = as_filter_input(x)
        n = input_length("x", batch)
        if n == 0:
            raise ValueError("x has 0 samples; expected at least one")
        with inference_mode(self):
            chunks = [
                fn(take_rows(batch, slice(start, start + batch_size)))
                for start in range(0, n, batch_size)
            ]
        out: npt.NDArray[np.float32] = torch.cat(chunks).numpy().astype(np.float32)
        return out


@contextmanager
def inference_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd, restoring the previous mode."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)
