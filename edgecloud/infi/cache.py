"""The InFi-Reuse cache: embeddings -> inference results, H-KNN lookup, LFU eviction.

Thesis §3.4.3 and Algorithm 3.1 (``InFiReuse``): the cache maps the embedding of a
past input (the feature network's output ``g_modality(x)``) to the result the model
gave for it. A new input is looked up by *homogeneous K nearest neighbours*
(H-KNN, from FoggyCache): its ``K`` nearest cached keys vote, the homogeneity
score ``θ`` is the share of the vote won by the majority result, and ``θ < θ_T``
is a cache miss, on which the caller runs the model and inserts the new pair
(``replace``, here least-frequently-used). :func:`reuse_stream` runs Algorithm 3.1
over a recorded stream, for evaluation and threshold choice.

Distances are Euclidean in the embedding space (the FoggyCache sub-instance of
§3.3.1 and the authors' code, which hand the 200-d embeddings to a KNN). The
thesis' own variant, with the trained pair classifier ``g_cls`` as the distance,
is not used: ``g_cls`` is a learned, non-metric score that would cost one network
evaluation per (query, entry) pair instead of one ``(B, S)`` array operation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edgecloud.validation import check_positive_int, check_real

logger = logging.getLogger(__name__)

Weighting = Literal["uniform", "distance"]
WEIGHTINGS: tuple[Weighting, ...] = ("uniform", "distance")
ResultType = Literal["int", "float"]
RESULT_TYPES: tuple[ResultType, ...] = ("int", "float")

# elements of one (queries, entries, dim) difference block: bounds lookup memory
_BLOCK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`HKNNCache` since it was built or its stats were reset.

    ``lookups`` counts queries (a batch of ``B`` counts ``B``), ``insertions`` the
    pairs inserted, ``evictions`` the entries an insertion replaced.
    """

    lookups: int = 0
    hits: int = 0
    misses: int = 0
    insertions: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float:
        """``hits / lookups`` (0 before the first lookup)."""
        return self.hits / self.lookups if self.lookups else 0.0


@dataclass(frozen=True, eq=False)
class Lookup:
    """The answer of :meth:`HKNNCache.lookup` for a batch of ``B`` queries.

    Attributes
    ----------
    hit : numpy.ndarray
        ``(B,)`` bool: the cached result may be reused.
    value : numpy.ndarray
        ``(B,)`` majority result of the neighbours (int64 or float64). Only
        meaningful where ``hit``; 0 where the cache was empty.
    theta : numpy.ndarray
        ``(B,)`` float64 homogeneity score in ``[0, 1]``, over the
        ``min(K, len)`` nearest entries (0 where the cache was empty). ``1 -
        theta`` is InFi-Reuse's confidence score for active updates (§3.4.3).
    distance : numpy.ndarray
        ``(B,)`` float64 Euclidean distance to the nearest key (``inf`` where the
        cache was empty).
    """

    hit: npt.NDArray[np.bool_]
    value: npt.NDArray[Any]
    theta: npt.NDArray[np.float64]
    distance: npt.NDArray[np.float64]


class HKNNCache:
    """Bounded cache of (embedding, result) pairs with H-KNN lookup and LFU eviction.

    Keys live in a preallocated ``(capacity, dim)`` float32 array (embeddings are
    rounded to float32 on insertion, and queries on lookup, so a query equal to a
    key is at distance exactly 0); results in a ``(capacity,)`` int64 or float64
    array. Entries occupy slots ``0 .. len - 1``; an eviction reuses its slot.

    **Lookup (H-KNN).** For ``B`` queries against ``S`` entries, one ``(B, S)``
    distance array (exact differences, no ``|q|² - 2 q·k + |k|²`` cancellation,
    and the same bits whatever the batch size), then per query the ``K`` nearest
    entries (equal distances: the lower slot first). Each neighbour votes for its
    result with weight 1 (``weighting="uniform"``, FoggyCache and the thesis'
    "share of the K neighbours") or ``1 / distance`` (``"distance"``, with
    scikit-learn's rule: when some neighbours are at distance 0, only they vote,
    equally). The majority result is the one with the largest total weight
    (a tie goes to the result of the nearest tied neighbour); ``θ`` is its weight
    over the total. A query **hits** when the cache holds at least ``K`` entries,
    ``θ >= θ_T``, and the nearest key is within ``max_distance`` (when set);
    otherwise it misses. An empty cache, or one with fewer than ``K`` entries,
    misses every query: it never answers from fewer neighbours than asked.

    **Replacement (LFU).** Each hit adds one use to every neighbour that voted for
    the served result. Inserting into a full cache replaces the entry with the
    fewest uses, the oldest insertion among ties; the new entry starts at 0 uses.

    Results must be discrete (classes, counts) or discretised before insertion
    (thesis §3.2.4, discussion 2): votes agree only on equal results.

    Parameters
    ----------
    capacity : int
        Most entries held (the thesis' cache size ``s``; 1000 for vehicle counting).
    dim : int
        Embedding length ``D`` (200 in the thesis).
    k : int
        Neighbours ``K`` per lookup, ``<= capacity`` (the thesis uses 10).
    theta_threshold : float
        ``θ_T`` in ``[0, 1]``: smallest homogeneity for a hit (the thesis uses 0.5).
        0 makes every lookup with ``K`` entries a hit (logged as a warning).
    max_distance : float | None
        A hit also needs the nearest key within this Euclidean distance (>= 0);
        ``None``: no bound (the thesis).
    weighting : {"uniform", "distance"}
        How neighbours' votes are weighted.
    result_type : {"int", "float"}
        ``"int"``: class indices or counts (int64); ``"float"``: discretised real
        results (float64, finite).
    """

    def __init__(
        self,
        capacity: int,
        dim: int,
        k: int = 10,
        theta_threshold: float = 0.5,
        max_distance: float | None = None,
        weighting: Weighting = "uniform",
        result_type: ResultType = "int",
    ) -> None:
        check_positive_int("capacity", capacity)
        check_positive_int("dim", dim)
        check_positive_int("k", k)
        if k > capacity:
            raise ValueError(
                f"k is {k}; expected at most capacity ({capacity}): a cache that "
                "never holds K entries never hits"
            )
        theta = check_real("theta_threshold", theta_threshold)
        if not 0.0 <= theta <= 1.0:
            raise ValueError(f"theta_threshold is {theta}; expected a value in [0, 1]")
        if max_distance is not None:
            bound = check_real("max_distance", max_distance)
            if bound < 0.0:
                raise ValueError(f"max_distance is {bound}; expected a distance >= 0")
        if weighting not in WEIGHTINGS:
            raise ValueError(
                f"weighting is {weighting!r}; expected one of {WEIGHTINGS}"
            )
        if result_type not in RESULT_TYPES:
            raise ValueError(
                f"result_type is {result_type!r}; expected one of {RESULT_TYPES}"
            )
        if theta == 0.0:
            logger.warning(
                "theta_threshold is 0: every lookup with %d entries cached is a hit",
                k,
            )
        self.capacity = int(capacity)
        self.dim = int(dim)
        self.k = int(k)
        self.theta_threshold = theta
        self.max_distance = None if max_distance is None else float(max_distance)
        self.weighting: Weighting = weighting
        self.result_type: ResultType = result_type
        value_dtype = np.int64 if result_type == "int" else np.float64
        self._keys = np.zeros((self.capacity, self.dim), dtype=np.float32)  # (S, D)
        self._values: npt.NDArray[Any] = np.zeros(self.capacity, dtype=value_dtype)
        self._uses = np.zeros(self.capacity, dtype=np.int64)  # LFU counts per slot
        self._inserted = np.zeros(self.capacity, dtype=np.int64)  # insertion order
        self._size = 0
        self._next_order = 0
        self._stats = CacheStats()

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        return self._size

    @property
    def stats(self) -> CacheStats:
        """Lookups, hits, misses, insertions and evictions so far."""
        return self._stats

    @property
    def keys(self) -> npt.NDArray[np.float32]:
        """``(len, dim)`` float32 copy of the keys, in slot order."""
        return self._keys[: self._size].copy()

    @property
    def values(self) -> npt.NDArray[Any]:
        """``(len,)`` copy of the cached results, in slot order."""
        return self._values[: self._size].copy()

    @property
    def uses(self) -> npt.NDArray[np.int64]:
        """``(len,)`` copy of each entry's hit count (its LFU frequency)."""
        return self._uses[: self._size].copy()

    def clear(self) -> None:
        """Drop every entry (the thesis re-initialises the cache every 5000 frames).

        The statistics are kept (:meth:`reset_stats` zeroes them).
        """
        self._size = 0

    def reset_stats(self) -> None:
        """Zero the statistics, keeping the entries."""
        self._stats = CacheStats()

    # ------------------------------------------------------------------ lookup
    def lookup(self, queries: npt.ArrayLike, *, count_uses: bool = True) -> Lookup:
        """H-KNN lookup of a batch of embeddings.

        Parameters
        ----------
        queries : array_like of float
            ``(B, dim)`` embeddings, finite in float32.
        count_uses : bool
            Record the hits (LFU uses and :attr:`stats`); ``False`` only inspects.

        Returns
        -------
        Lookup
            Per query: hit, majority result, ``θ`` and nearest distance.

        Raises
        ------
        ValueError
            On a wrong shape, a non-floating dtype, or a NaN, infinite or
            float32-overflowing entry; nothing is recorded then.
        """
        q = _as_embeddings("queries", queries, self.dim)  # (B, D) float64
        b, n = len(q), self._size
        hit = np.zeros(b, dtype=np.bool_)
        value: npt.NDArray[Any] = np.zeros(b, dtype=self._values.dtype)
        theta = np.zeros(b, dtype=np.float64)
        distance = np.full(b, np.inf)
        if b and n:
            kk = min(self.k, n)
            dist = self._distances(q)  # (B, S)
            order = np.argsort(dist, axis=1, kind="stable")[:, :kk]  # (B, K)
            near = np.take_along_axis(dist, order, axis=1)  # (B, K), ascending
            votes = self._values[order]  # (B, K)
            weights = self._vote_weights(near)  # (B, K)
            agree = votes[:, :, None] == votes[:, None, :]  # (B, K, K)
            support = (agree * weights[:, None, :]).sum(axis=2)  # (B, K)
            # argmax takes the first maximum: the nearest neighbour among tied results
            best = support.argmax(axis=1)  # (B,)
            rows = np.arange(b)
            value = votes[rows, best]
            theta = np.minimum(support[rows, best] / weights.sum(axis=1), 1.0)
            distance = near[:, 0]
            hit = (theta >= self.theta_threshold) & (n >= self.k)
            if self.max_distance is not None:
                hit &= distance <= self.max_distance
            if count_uses:
                voters = (votes == value[:, None]) & hit[:, None]  # (B, K)
                np.add.at(self._uses, order[voters], 1)
        if count_uses:
            hits = int(hit.sum())
            self._stats = CacheStats(
                lookups=self._stats.lookups + b,
                hits=self._stats.hits + hits,
                misses=self._stats.misses + b - hits,
                insertions=self._stats.insertions,
                evictions=self._stats.evictions,
            )
        return Lookup(hit=hit, value=value, theta=theta, distance=distance)

    def _distances(self, q: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``(B, S)`` Euclidean distances of ``q`` ``(B, D)`` to the cached keys."""
        keys = self._keys[: self._size].astype(np.float64)  # (S, D)
        out = np.empty((len(q), len(keys)), dtype=np.float64)
        step = max(1, _BLOCK_ELEMENTS // max(1, keys.size))
        for start in range(0, len(q), step):  # query blocks bound the memory
            diff = q[start : start + step, None, :] - keys[None, :, :]  # (b, S, D)
            out[start : start + step] = np.sqrt((diff * diff).sum(axis=2))
        return out

    def _vote_weights(self, near: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``(B, K)`` vote weights of neighbours at distances ``near``."""
        if self.weighting == "uniform":
            return np.ones_like(near)
        exact = near == 0.0
        with np.errstate(divide="ignore"):
            inverse = 1.0 / near
        # scikit-learn's rule: exact matches outvote everything else, equally
        weights: npt.NDArray[np.float64] = np.where(
            exact.any(axis=1, keepdims=True), exact.astype(np.float64), inverse
        )
        return weights

    # ------------------------------------------------------------------ insert
    def insert(self, keys: npt.ArrayLike, values: npt.ArrayLike) -> int:
        """Insert ``B`` (embedding, result) pairs, evicting LFU entries when full.

        Pairs are inserted in order, so in a batch larger than the free space the
        earlier new pairs (0 uses, older) may be evicted by later ones.

        Parameters
        ----------
        keys : array_like of float
            ``(B, dim)`` embeddings, finite in float32.
        values : array_like
            ``(B,)`` results: integers for ``result_type="int"``; finite numbers
            for ``"float"``.

        Returns
        -------
        int
            Number of entries evicted.

        Raises
        ------
        ValueError
            On a bad key (as :meth:`lookup`) or a bad result; the cache is then
            unchanged.
        """
        new_keys = _as_embeddings("keys", keys, self.dim).astype(np.float32)  # (B, D)
        new_values = as_results("values", values, len(new_keys), self.result_type)
        evicted = 0
        for key, val in zip(new_keys, new_values, strict=True):
            if self._size < self.capacity:
                slot = self._size
                self._size += 1
            else:
                slot = self._lfu_slot()
                evicted += 1
            self._keys[slot] = key
            self._values[slot] = val
            self._uses[slot] = 0
            self._inserted[slot] = self._next_order
            self._next_order += 1
        self._stats = CacheStats(
            lookups=self._stats.lookups,
            hits=self._stats.hits,
            misses=self._stats.misses,
            insertions=self._stats.insertions + len(new_keys),
            evictions=self._stats.evictions + evicted,
        )
        return evicted

    def _lfu_slot(self) -> int:
        """Slot of the least-used entry, the oldest insertion among ties."""
        uses = self._uses[: self._size]
        least = uses == uses.min()
        inserted = np.where(least, self._inserted[: self._size], np.iinfo(np.int64).max)
        return int(inserted.argmin())


# ---------------------------------------------------------------------- streams
def reuse_stream(
    cache: HKNNCache,
    embeddings: npt.ArrayLike,
    results: npt.ArrayLike,
    *,
    warm_up: bool = True,
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """Serve a recorded stream with InFi-Reuse (Algorithm 3.1, ``InFiReuse``).

    In stream order: while the cache is not full (``warm_up``, lines 12–14), the
    model runs and its result is inserted; afterwards each input is looked up, a
    hit is served the cached result (the input is filtered), a miss runs the
    model and inserts its result (lines 16–19). ``results`` stands in for the
    model: the result running it on that input gives (it is read on misses only).

    Parameters
    ----------
    cache : HKNNCache
        The cache to serve from; it is updated (entries, uses, stats).
    embeddings : array_like of float
        ``(N, dim)`` embeddings of the inputs, in arrival order.
    results : array_like
        ``(N,)`` the model's result on each input.
    warm_up : bool
        Fill the cache before the first lookup (the thesis); ``False`` looks up
        from the first input (a cache with fewer than ``K`` entries misses).

    Returns
    -------
    served : numpy.ndarray
        ``(N,)`` the result served for each input.
    reused : numpy.ndarray
        ``(N,)`` bool, True where a cached result was served (filtered).
    """
    emb = _as_embeddings("embeddings", embeddings, cache.dim)  # (N, D)
    truth = as_results("results", results, len(emb), cache.result_type)  # (N,)
    served = truth.copy()
    reused = np.zeros(len(emb), dtype=np.bool_)
    for i in range(len(emb)):  # sequential: each miss changes later lookups
        if warm_up and len(cache) < cache.capacity:
            cache.insert(emb[i : i + 1], truth[i : i + 1])
            continue
        answer = cache.lookup(emb[i : i + 1])
        if answer.hit[0]:
            served[i] = answer.value[0]
            reused[i] = True
        else:
            cache.insert(emb[i : i + 1], truth[i : i + 1])
    return served, reused


# ---------------------------------------------------------------------- helpers
def _as_embeddings(
    name: str, value: npt.ArrayLike, dim: int
) -> npt.NDArray[np.float64]:
    """``value`` as ``(B, dim)`` float64 holding float32-rounded, finite values."""
    arr: npt.NDArray[Any] = np.asarray(value)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(
            f"{name} has shape {arr.shape}; expected (B, {dim}) "
            f"(B embeddings of dim {dim})"
        )
    if arr.dtype.kind != "f":
        raise ValueError(
            f"{name} has dtype {arr.dtype}; expected floating-point embeddings"
        )
    with np.errstate(over="ignore"):
        rounded = arr.astype(np.float32)
    bad = ~np.isfinite(rounded)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}[{row}, {col}] is {arr[row, col]}; expected a finite float32 number"
        )
    return rounded.astype(np.float64)


def as_results(
    name: str, value: npt.ArrayLike, n: int, result_type: ResultType
) -> npt.NDArray[Any]:
    """``value`` as ``(n,)`` results: int64 (``"int"``) or finite float64."""
    arr: npt.NDArray[Any] = np.asarray(value)
    if arr.shape != (n,):
        raise ValueError(f"{name} has shape {arr.shape}; expected ({n},) (one per key)")
    dtype = np.int64 if result_type == "int" else np.float64
    if n == 0:
        return arr.astype(dtype)
    kinds = "iu" if result_type == "int" else "iuf"
    if arr.dtype.kind not in kinds:
        expected = "integers" if result_type == "int" else "real numbers"
        raise ValueError(
            f"{name} has dtype {arr.dtype}; expected {expected} "
            f"(result_type {result_type!r})"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        index = int(np.argmax(~np.isfinite(arr)))
        raise ValueError(f"{name}[{index}] is {arr[index]}; expected a finite result")
    return arr.astype(dtype)
