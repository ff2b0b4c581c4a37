"""Offline training of InFi filters: skip as binary classification, reuse on pairs.

InFi §3.4.3. Both filters share the :class:`~edgecloud.infi.siamese.InputFilter`
architecture and differ only in their training data:

- **skip** (:func:`fit_skip`): samples ``(x_i, r_i)`` with ``r_i = 1`` when the
  black box's result on ``x_i`` was redundant (NONE: no face, zero vehicles), the
  binary cross-entropy between :meth:`InputFilter.skip_logits` and ``r``;
- **reuse** (:func:`fit_reuse`): random pairs ``(x_i, x_j)`` labelled
  ``s = 1(y_i == y_j)`` ("x_j may reuse x_i's result"), the contrastive loss of the
  authors' code with margin 1 on the predicted distance ``d = 1 - p``::

      s d^2 + (1 - s) max(1 - d, 0)^2  =  (s - p)^2      for p in (0, 1)

  The thesis labels pairs ``1(y_i != y_j)`` because its output is a distance; the
  filter here outputs the reuse probability ``p = 1 - d`` (see
  :mod:`edgecloud.infi.siamese`), so the label is flipped and the loss unchanged.

Both use RMSprop, like the authors' code (``RMSprop(learning_rate=0.001)``) and
PacketGame's predictor: the thesis' learning rate then carries over as it is.
Training is deterministic given ``seed``: the shuffling and the pairs come from
private generators, and the dropout masks from a forked torch RNG seeded with
``seed`` (the global RNG is left as it was).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

from edgecloud.infi.features import (
    FilterInput,
    InputLike,
    as_filter_input,
    input_length,
    take_rows,
)
from edgecloud.infi.siamese import InputFilter
from edgecloud.validation import check_positive_int


def fit_skip(
    model: InputFilter,
    inputs: InputLike,
    labels: npt.ArrayLike,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
) -> list[float]:
    """Train an InFi-Skip filter on inputs labelled redundant (1) or not (0).

    Parameters
    ----------
    model : InputFilter
        Trained in place; left in eval mode.
    inputs : array_like, tensor or mapping of them
        ``N`` inputs in the feature network's layout.
    labels : array_like
        ``(N,)`` (one task) or ``(N, num_tasks)`` values in {0, 1}: 1 when the
        black box's result on the input was NONE, so inference could be skipped.
    epochs : int
        Passes over the data (>= 1).
    lr : float
        RMSprop learning rate (finite, > 0).
    batch_size : int
        Samples per step (>= 1).
    seed : int
        Seeds the shuffling and the dropout masks: the same model, data and seed
        give the same weights and losses.

    Returns
    -------
    list[float]
        Mean training BCE of each epoch.
    """
    batch, n = _check_common(model, inputs, epochs, lr, batch_size)
    target = torch.from_numpy(_binary_labels(labels, n, model.num_tasks))
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=lr)
    history: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            total = 0.0
            for start in range(0, n, batch_size):
                rows = order[start : start + batch_size]
                optimizer.zero_grad()
                loss = F.binary_cross_entropy_with_logits(
                    model.skip_logits(take_rows(batch, rows)), target[rows]
                )
                torch.autograd.backward(loss)
                optimizer.step()
                total += float(loss.item()) * rows.numel()
            history.append(total / n)
    model.eval()
    return history


def fit_reuse(
    model: InputFilter,
    inputs: InputLike,
    results: npt.ArrayLike,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 32,
    pairs_per_epoch: int | None = None,
    seed: int = 0,
    same: Callable[[Any, Any], bool] | None = None,
) -> list[float]:
    """Train an InFi-Reuse filter on random pairs of inputs and black-box results.

    Each epoch draws ``pairs_per_epoch`` pairs ``(i, j)``, ``i != j``, uniformly;
    pair ``(i, j)`` of task ``t`` is labelled reusable (1) when
    ``same(results[i, t], results[j, t])``.

    Parameters
    ----------
    model : InputFilter
        Trained in place; left in eval mode.
    inputs : array_like, tensor or mapping of them
        ``N >= 2`` inputs in the feature network's layout.
    results : array_like
        ``(N,)`` (one task) or ``(N, num_tasks)`` black-box outputs on the inputs:
        class indices, counts or regression values (floats must be finite).
    epochs : int
        Passes (>= 1), each of ``pairs_per_epoch`` pairs.
    lr : float
        RMSprop learning rate (finite, > 0).
    batch_size : int
        Pairs per step (>= 1).
    pairs_per_epoch : int | None
        Pairs drawn per epoch; ``None`` draws ``N``.
    seed : int
        Seeds the pairs and the dropout masks: the same model, data and seed give
        the same weights and losses.
    same : Callable[[Any, Any], bool] | None
        Whether two results of one task are interchangeable (for regression
        outputs, e.g. ``lambda a, b: abs(a - b) < 0.5``); ``None`` is exact
        equality.

    Returns
    -------
    list[float]
        Mean training contrastive loss of each epoch.
    """
    batch, n = _check_common(model, inputs, epochs, lr, batch_size)
    if n < 2:
        raise ValueError(f"inputs has {n} sample; expected at least 2 to form pairs")
    outputs = _results(results, n, model.num_tasks)
    pairs = n if pairs_per_epoch is None else pairs_per_epoch
    check_positive_int("pairs_per_epoch", pairs)
    pairs = int(pairs)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=lr)
    history: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks
        model.train()
        for _ in range(epochs):
            first = rng.integers(0, n, pairs)
            # j uniform over the other n - 1 samples: never pairs a sample with itself
            second = (first + rng.integers(1, n, pairs)) % n
            target = torch.from_numpy(_same_labels(outputs, first, second, same))
            left, right = torch.from_numpy(first), torch.from_numpy(second)
            total = 0.0
            for start in range(0, pairs, batch_size):
                rows = slice(start, start + batch_size)
                optimizer.zero_grad()
                logits = model.pair_logits(
                    take_rows(batch, left[rows]), take_rows(batch, right[rows])
                )
                loss = F.mse_loss(torch.sigmoid(logits), target[rows])
                torch.autograd.backward(loss)
                optimizer.step()
                total += float(loss.item()) * len(left[rows])
            history.append(total / pairs)
    model.eval()
    return history


# --- checks -------------------------------------------------------------------


def _check_common(
    model: InputFilter, inputs: InputLike, epochs: int, lr: float, batch_size: int
) -> tuple[FilterInput, int]:
    """Validate the arguments both fits share; the inputs as tensors and ``N``."""
    if not isinstance(model, InputFilter):
        raise ValueError(f"model is a {type(model).__name__}; expected an InputFilter")
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    try:
        rate = float(lr)
    except (TypeError, ValueError):
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0.0):
        raise ValueError(f"lr is {lr}; expected a finite number > 0")
    batch = as_filter_input(inputs)
    n = input_length("inputs", batch)
    if n == 0:
        raise ValueError("inputs has 0 samples; expected at least one")
    return batch, n


def _task_matrix(
    name: str, value: npt.ArrayLike, n: int, num_tasks: int
) -> npt.NDArray[Any]:
    """``(n,)`` (one task) or ``(n, num_tasks)`` values as ``(n, num_tasks)``."""
    arr = np.asarray(value)
    if num_tasks == 1 and arr.shape == (n,):
        arr = arr[:, None]
    if arr.shape != (n, num_tasks):
        expected = f"({n},) or ({n}, 1)" if num_tasks == 1 else f"({n}, {num_tasks})"
        raise ValueError(
            f"{name} has shape {arr.shape}; expected {expected} like the inputs"
        )
    return arr


def _binary_labels(
    labels: npt.ArrayLike, n: int, num_tasks: int
) -> npt.NDArray[np.float32]:
    """Skip labels as float32 ``(n, num_tasks)``; every value must be 0 or 1."""
    arr = _task_matrix("labels", labels, n, num_tasks)
    try:
        ok = np.broadcast_to(np.asarray((arr == 0) | (arr == 1), bool), arr.shape)
    except (TypeError, ValueError):  # labels that do not compare with numbers
        ok = np.zeros(arr.shape, dtype=bool)
    if not ok.all():
        row, task = (int(i) for i in np.argwhere(~ok)[0])
        where = f"[{row}]" if num_tasks == 1 else f"[{row}, {task}]"
        raise ValueError(f"labels{where} is {arr[row, task]}; expected 0 or 1")
    return arr.astype(np.float32)


def _results(results: npt.ArrayLike, n: int, num_tasks: int) -> npt.NDArray[Any]:
    """Black-box results as ``(n, num_tasks)``; float results must be finite."""
    arr = _task_matrix("results", results, n, num_tasks)
    if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(
        arr.dtype, np.complexfloating
    ):
        bad = ~np.isfinite(arr)
        if bad.any():
            row, task = (int(i) for i in np.argwhere(bad)[0])
            where = f"[{row}]" if num_tasks == 1 else f"[{row}, {task}]"
            raise ValueError(
                f"results{where} is {arr[row, task]}; expected finite numbers"
            )
    return arr


def _same_labels(
    results: npt.NDArray[Any],
    first: npt.NDArray[np.int64],
    second: npt.NDArray[np.int64],
    same: Callable[[Any, Any], bool] | None,
) -> npt.NDArray[np.float32]:
    """Reuse labels ``(pairs, num_tasks)``: 1 where the two results are the same."""
    a, b = results[first], results[second]  # (pairs, tasks)
    if same is None:
        return np.asarray(a == b, dtype=np.float32)
    flat = [bool(same(x, y)) for x, y in zip(a.ravel(), b.ravel(), strict=True)]
    return np.asarray(flat, dtype=np.float32).reshape(a.shape)
