"""Serving a black box behind InFi filters, failing safe (thesis Algorithm 3.1).

:class:`FilteredModel` puts an InFi-Skip threshold and/or an InFi-Reuse cache in
front of a model ``h``. For each batch the filter decides which inputs are
skipped (served the NONE result), which are answered from the cache, and which
run through ``h`` (their embeddings and results then enter the cache).

**The filter is an optimisation, never a source of answers on its own.** When
the filter cannot decide (it raises on the input, gives a NaN or infinite skip
probability or embedding, or the cache refuses the query), the whole batch runs
through ``h`` and nothing is served from the filter or the cache; the cache is
left exactly as it was and the failure is counted and logged with its reason.
Bad settings (a threshold outside ``[0, 1]``, a cache whose ``dim`` does not
match the filter's embeddings, a multi-task filter) are refused when the server
is built. No flwr import.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecloud.infi.cache import HKNNCache
from edgecloud.infi.features import InputLike, as_filter_input, input_length
from edgecloud.infi.siamese import InputFilter
from edgecloud.validation import check_real

logger = logging.getLogger(__name__)

Model = Callable[[npt.NDArray[np.int64]], npt.ArrayLike]
"""Runs ``h`` on the batch rows given by index ``(M,)`` -> ``(M,)`` results."""

# what a filter may raise on an input it cannot take (torch raises RuntimeError,
# the feature networks ValueError, NumPy FloatingPointError under errstate)
_FILTER_FAILURES = (ValueError, RuntimeError, FloatingPointError)


@dataclass(frozen=True, eq=False)
class Served:
    """One batch's results and how each was obtained.

    Attributes
    ----------
    results : numpy.ndarray
        ``(N,)`` the result served per input.
    skipped : numpy.ndarray
        ``(N,)`` bool: served the NONE result without running ``h``.
    reused : numpy.ndarray
        ``(N,)`` bool: served a cached result without running ``h``.
    fallback : str
        Empty when the filter decided; otherwise why the whole batch ran ``h``.
    """

    results: npt.NDArray[Any]
    skipped: npt.NDArray[np.bool_]
    reused: npt.NDArray[np.bool_]
    fallback: str = ""

    @property
    def ran_model(self) -> npt.NDArray[np.bool_]:
        """``(N,)`` bool: the inputs ``h`` ran on."""
        out: npt.NDArray[np.bool_] = ~(self.skipped | self.reused)
        return out


class FilteredModel:
    """A model behind an InFi-Skip threshold and/or an InFi-Reuse cache.

    Parameters
    ----------
    input_filter : InputFilter
        A trained single-task filter (both skip and reuse use its embeddings).
    none_result : int or float
        What a skipped input is served (the redundancy measure's NONE: count 0,
        the "none" class).
    skip_threshold : float | None
        Skip when the skip probability is ``>= skip_threshold`` (in ``[0, 1]``,
        from :func:`~edgecloud.infi.thresholds.choose_skip_threshold`); ``None``:
        never skip.
    cache : HKNNCache | None
        Reuse cache over the filter's embeddings; ``None``: never reuse.
    """

    def __init__(
        self,
        input_filter: InputFilter,
        none_result: float,
        skip_threshold: float | None = None,
        cache: HKNNCache | None = None,
    ) -> None:
        if not isinstance(input_filter, InputFilter):
            raise ValueError(
                f"input_filter is a {type(input_filter).__name__}; expected an "
                "InputFilter"
            )
        if input_filter.num_tasks != 1:
            raise ValueError(
                f"input_filter has {input_filter.num_tasks} tasks; expected a "
                "single-task filter"
            )
        if skip_threshold is not None:
            cut = check_real("skip_threshold", skip_threshold)
            if not 0.0 <= cut <= 1.0:
                raise ValueError(
                    f"skip_threshold is {cut}; expected a probability in [0, 1]"
                )
        if cache is not None and cache.dim != input_filter.embedding_dim:
            raise ValueError(
                f"cache has dim {cache.dim}; expected the filter's embedding "
                f"dim {input_filter.embedding_dim}"
            )
        if not math.isfinite(check_real("none_result", none_result)):
            raise ValueError(f"none_result is {none_result}; expected a finite number")
        self.input_filter = input_filter
        self.none_result = none_result
        self.skip_threshold = skip_threshold
        self.cache = cache
        self.failures = 0

    def __call__(self, inputs: InputLike, model: Model) -> Served:
        """Serve one batch.

        Parameters
        ----------
        inputs : array_like or mapping of them
            ``N`` inputs in the filter's layout.
        model : Model
            Runs ``h`` on the rows it is given (by index into the batch).

        Returns
        -------
        Served
        """
        batch = as_filter_input(inputs)
        n = input_length("inputs", batch)
        try:
            skipped, reused, cached, embeddings = self._decide(batch, n)
        except _FILTER_FAILURES as exc:
            self.failures += 1
            reason = f"{type(exc).__name__}: {exc}"
            logger.warning("input filter failed, running the model: %s", reason)
            everything = np.arange(n, dtype=np.int64)
            results = _as_results(model(everything), n)
            none = np.zeros(n, dtype=np.bool_)
            return Served(results, none, none.copy(), fallback=reason)
        run = np.flatnonzero(~(skipped | reused)).astype(np.int64)
        fresh = _as_results(model(run), len(run)) if len(run) else np.zeros(0)
        dtype = np.result_type(fresh.dtype, np.asarray(self.none_result).dtype)
        if self.cache is not None and cached.size:
            dtype = np.result_type(dtype, cached.dtype)
        results = np.empty(n, dtype=dtype)
        results[skipped] = self.none_result
        if self.cache is not None:
            results[reused] = cached[reused]
            if len(run):
                self.cache.insert(embeddings[run], fresh)
        results[run] = fresh
        return Served(results, skipped, reused)

    def _decide(
        self, batch: Any, n: int
    ) -> tuple[
        npt.NDArray[np.bool_],
        npt.NDArray[np.bool_],
        npt.NDArray[Any],
        npt.NDArray[np.float32],
    ]:
        """Skip and reuse masks, cached values and embeddings; raises on failure."""
        skipped = np.zeros(n, dtype=np.bool_)
        reused = np.zeros(n, dtype=np.bool_)
        cached: npt.NDArray[Any] = np.zeros(0)
        embeddings: npt.NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)
        if self.skip_threshold is not None:
            prob = self.input_filter.predict_skip(batch)[:, 0]
            if prob.shape != (n,) or not np.isfinite(prob).all():
                raise ValueError(
                    "skip probabilities are not finite; expected numbers in [0, 1]"
                )
            skipped = prob >= self.skip_threshold
        if self.cache is not None:
            embeddings = self.input_filter.predict_embeddings(batch)
            # lookup validates (finite, shape) before it records anything
            answer = self.cache.lookup(embeddings, count_uses=False)
            reused = answer.hit & ~skipped
            if reused.any():
                self.cache.lookup(embeddings[reused])  # count the hits (LFU, stats)
            cached = answer.value
        return skipped, reused, cached, embeddings


def _as_results(value: npt.ArrayLike, n: int) -> npt.NDArray[Any]:
    """The model's results as ``(n,)``; a model that answers otherwise is a bug."""
    out: npt.NDArray[Any] = np.asarray(value)
    if out.shape != (n,):
        raise ValueError(
            f"the model returned shape {out.shape} for {n} inputs; expected ({n},)"
        )
    return out
