"""The input filters InFi is compared with: Reducto, FoggyCache and FilterForward.

Thesis §3.3.1 casts three earlier filters as sub-instances of InFi's framework
(feature embedding -> difference function -> classifier) and §3.5 compares with
them at 90 % inference accuracy. Each one here exposes the operating-point
interface of its InFi counterpart, so a benchmark sweeps it with
:mod:`edgecloud.infi.thresholds`:

=============  ===========================  ======================================
baseline       interface                    operating point at a target accuracy
=============  ===========================  ======================================
Reducto        ``serve(threshold)``         ``choose_threshold(grid,
                                            reuse_evaluation(serve, results), t)``
FoggyCache     ``serve(theta)``             ``choose_reuse_threshold(grid, serve,
                                            results, t)``
FilterForward  ``skip_probability(inputs)`` ``choose_skip_threshold(p, redundant,
                                            t)``
=============  ===========================  ======================================

``serve(x) -> (served (N,), filtered (N,))`` replays a recorded stream in order,
given the model's result on every input (read only where the model would run);
the thesis sweeps each threshold over ``[0, 1]`` in steps of 0.01 (§3.5.2).
Quotations of the thesis below are translated from the Chinese.

**Reducto** (Li et al., SIGCOMM'20; thesis §3.3.1, sub-instance 3: "it measures
the difference of low-level features (pixel, edge, corner, area) between
consecutive frames; if two frames are similar enough it skips the current frame
and returns the latest inference result"). The difference is the share of
pixels that changed by more than ``change`` (Reducto's code: 21 grey levels of
255), on the pixels themselves (``"pixel"``), on Sobel edge strengths
(``"edge"``), or the largest connected changed region (``"area"``). It is taken
against the last input actually **sent** to the model, as Reducto's on-camera
loop does (its offline sweep approximates that by summing consecutive
differences, which over-counts a change that reverts). An input whose
difference is *below* the threshold reuses the last result, so threshold 0
filters nothing (Reducto sends on ``d > T``: the tie goes the other way).

**FoggyCache** (Guo et al., MobiCom'18; thesis §3.3.1, sub-instance 2: "low-level
features and locality-sensitive hashing, the L2 norm as difference function
and K nearest neighbours to fetch a reusable result"). :func:`low_level_features`
stands in for SIFT / MFCC; :class:`LSHCache` finds candidates with p-stable LSH
(several tables) whose bucket width follows the density of the cache (the idea
of A-LSH), then votes among the ``K`` nearest candidates with the homogeneity
check of H-kNN: reuse only when a share ``>= θ`` of them agree.

**FilterForward** (Canel et al., MLSys'19; thesis §3.3.1, sub-instance 1: "the
intermediate output of a pretrained MobileNet as embedding, then a
micro-classifier of convolution blocks makes the binary filtering decision"):
a frozen extractor given by the caller and FF's full-frame micro-classifier
(1x1 convolutions, global max pooling), trained with BCE on skip labels.

No flwr import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812
from scipy import ndimage
from torch import nn

from edgecloud.infi.cache import RESULT_TYPES, ResultType, as_results
from edgecloud.infi.siamese import inference_mode
from edgecloud.validation import check_positive_int, check_real

ReductoFeature = Literal["pixel", "edge", "area"]
REDUCTO_FEATURES: tuple[ReductoFeature, ...] = ("pixel", "edge", "area")

REDUCTO_CHANGE = 21 / 255
"""Reducto's default bound on a changed pixel: 21 grey levels of 255."""

# ITU-R BT.601 luma weights (OpenCV's BGR2GRAY), for RGB channel order
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# elements of one vectorised difference block: bounds memory on long streams
_BLOCK_ELEMENTS = 1 << 22
# keys sampled to estimate the LSH bucket width
_WIDTH_SAMPLE = 256
# largest |code| before the int64 cast (a tiny bucket width would overflow)
_CODE_LIMIT = float(2**62)


# ============================================================================ Reducto
class Reducto:
    """Reducto over a recorded stream: reuse the last result while little changed.

    Parameters
    ----------
    inputs : array_like
        ``(N, ...)`` the stream in arrival order, ``N >= 1``: images ``(N, H, W,
        C)`` with ``C`` 1 (grey) or 3 (RGB), grey images or spectrograms
        ``(N, H, W)``, or vectors ``(N, D)``. ``uint8`` values are grey levels
        (divided by 255); floats are taken as they are (images in ``[0, 1]``).
    results : array_like
        ``(N,)`` or ``(N, ...)`` the model's result on every input (numbers,
        floats finite); a filtered input is served the result of the last input
        sent.
    feature : {"pixel", "edge", "area"}
        The low-level feature. ``"pixel"`` works on any input; ``"edge"`` and
        ``"area"`` need images or ``(N, H, W)`` maps with ``H, W >= 3``.
    change : float
        A pixel (or edge strength) counts as changed when it moved by more than
        this, in the units of the scaled input (finite, ``>= 0``).

    Attributes
    ----------
    differences : numpy.ndarray
        ``(N,)`` float64 difference of each input to the previous one, in
        ``[0, 1]``; ``inf`` for the first input, which is always sent.
    """

    def __init__(
        self,
        inputs: npt.ArrayLike,
        results: npt.ArrayLike,
        feature: ReductoFeature = "pixel",
        change: float = REDUCTO_CHANGE,
    ) -> None:
        self._maps, self._image = _reducto_maps(inputs, feature)
        self.results = _as_stream_results(results, len(self._maps))
        self.feature: ReductoFeature = feature
        self.change = _check_change(change)
        self.differences = _consecutive(self._maps, feature, self._image, self.change)
        # (i, j) -> difference: threshold sweeps revisit the same pairs
        self._memo: dict[tuple[int, int], float] = {}

    def __len__(self) -> int:
        return len(self._maps)

    def difference(self, i: int, j: int) -> float:
        """The feature difference between inputs ``i`` and ``j``, in ``[0, 1]``.

        Parameters
        ----------
        i, j : int
            Stream positions in ``[0, N)``.

        Returns
        -------
        float
        """
        n = len(self._maps)
        for name, index in (("i", i), ("j", j)):
            if isinstance(index, bool) or not isinstance(index, int | np.integer):
                raise ValueError(f"{name} is {index!r}; expected an input index")
            if not 0 <= index < n:
                raise ValueError(f"{name} is {index}; expected an index in [0, {n})")
        return self._pair(int(i), int(j))

    def serve(self, threshold: float) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
        """Replay the stream: reuse the last result while the difference is small.

        The first input is sent; every later input is compared with the last
        input **sent** (not the previous one) and reuses that input's result
        when the difference is below ``threshold``, else it is sent and becomes
        the reference.

        Parameters
        ----------
        threshold : float
            ``>= 0``; 0 filters nothing, ``inf`` filters all but the first input.

        Returns
        -------
        served : numpy.ndarray
            The result served for each input, shaped like ``results``.
        filtered : numpy.ndarray
            ``(N,)`` bool, True where the model was not run.
        """
        cut = check_real("threshold", threshold)
        if cut < 0.0:
            raise ValueError(f"threshold is {cut}; expected a difference >= 0")
        n = len(self._maps)
        source = np.arange(n)  # (N,) whose result each input is served
        filtered = np.zeros(n, dtype=np.bool_)
        last = 0
        for i in range(1, n):  # sequential: a sent input moves the reference
            if self._pair(i, last) < cut:
                source[i] = last
                filtered[i] = True
            else:
                last = i
        return self.results[source], filtered

    def _pair(self, i: int, j: int) -> float:
        """Memoised difference of inputs ``i`` and ``j``."""
        key = (i, j) if i <= j else (j, i)
        if key not in self._memo:
            share = _changed_share(
                self._maps[i : i + 1],
                self._maps[j : j + 1],
                self.feature,
                self._image,
                self.change,
            )
            self._memo[key] = float(share[0])
        return self._memo[key]


def frame_differences(
    inputs: npt.ArrayLike,
    feature: ReductoFeature = "pixel",
    change: float = REDUCTO_CHANGE,
) -> npt.NDArray[np.float64]:
    """Reducto's difference of each input to the previous one, in stream order.

    Parameters
    ----------
    inputs : array_like
        ``(N, ...)`` the stream, as for :class:`Reducto`.
    feature : {"pixel", "edge", "area"}
        The low-level feature.
    change : float
        Smallest change of a pixel that counts (finite, ``>= 0``).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64 in ``[0, 1]``, ``inf`` first (nothing to compare with).
    """
    maps, image = _reducto_maps(inputs, feature)
    return _consecutive(maps, feature, image, _check_change(change))


def _reducto_maps(
    inputs: npt.ArrayLike, feature: ReductoFeature
) -> tuple[npt.NDArray[np.float32], bool]:
    """What ``feature`` compares, per input, and whether the inputs are images.

    ``"pixel"``: the scaled inputs as they are (grey conversion happens on the
    absolute difference, as in Reducto); ``"edge"``: ``(N, H, W)`` Sobel
    strengths; ``"area"``: ``(N, H, W)`` grey levels.
    """
    if feature not in REDUCTO_FEATURES:
        raise ValueError(f"feature is {feature!r}; expected one of {REDUCTO_FEATURES}")
    frames = _as_stream("inputs", inputs)
    image = _is_image("inputs", frames)
    if feature == "pixel":
        return frames, image
    if frames.ndim not in (3, 4) or min(frames.shape[1:3]) < 3:
        raise ValueError(
            f"inputs has shape {frames.shape}; expected images (N, H, W, C) or "
            f"(N, H, W) maps with H, W >= 3 for the {feature} feature"
        )
    grey = _grey(frames) if image else frames  # (N, H, W)
    return (_sobel(grey) if feature == "edge" else grey), image


def _consecutive(
    maps: npt.NDArray[np.float32], feature: ReductoFeature, image: bool, change: float
) -> npt.NDArray[np.float64]:
    """``(N,)`` differences of each map to the previous one (``inf`` first)."""
    out = np.full(len(maps), np.inf)
    step = max(1, _BLOCK_ELEMENTS // max(1, maps[0].size))
    for start in range(1, len(maps), step):
        stop = min(start + step, len(maps))
        out[start:stop] = _changed_share(
            maps[start:stop], maps[start - 1 : stop - 1], feature, image, change
        )
    return out


def _changed_share(
    a: npt.NDArray[np.float32],
    b: npt.NDArray[np.float32],
    feature: ReductoFeature,
    image: bool,
    change: float,
) -> npt.NDArray[np.float64]:
    """``(B,)`` Reducto difference of maps ``a[i]`` and ``b[i]`` (``(B, ...)``)."""
    delta = np.abs(a - b)  # (B, ...)
    if feature == "pixel" and image:
        delta = _grey(delta)  # (B, H, W): Reducto greys the absolute difference
    changed = delta > change
    if feature != "area":
        share: npt.NDArray[np.float64] = changed.reshape(len(a), -1).mean(axis=1)
        return share
    return np.array([_largest_region(mask) for mask in changed], dtype=np.float64)


def _largest_region(mask: npt.NDArray[np.bool_]) -> float:
    """Share of an ``(H, W)`` frame covered by its largest changed region.

    Reducto's area feature dilates the changed pixels once with a 3x3 kernel
    and takes the largest external contour; the region here is the largest
    8-connected component of the dilated mask (holes are not filled in, and
    pixels are counted rather than the contour polygon measured).
    """
    square = np.ones((3, 3), dtype=bool)
    grown = ndimage.binary_dilation(mask, structure=square)
    labels, count = ndimage.label(grown, structure=square)
    if count == 0:
        return 0.0
    sizes = np.bincount(np.asarray(labels).ravel())[1:]  # background is label 0
    return float(sizes.max()) / mask.size


def _sobel(grey: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``(N, H, W)`` Sobel gradient magnitudes, a unit step giving 1.

    Borders are reflected without repeating the edge pixel (OpenCV's default),
    so a uniform brightness change leaves every strength unchanged.
    """
    p = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="reflect")  # (N, H + 2, W + 2)
    cols = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]  # (N, H, W + 2) vertical smoothing
    rows = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]  # (N, H + 2, W)
    gx = cols[:, :, 2:] - cols[:, :, :-2]  # (N, H, W)
    gy = rows[:, 2:] - rows[:, :-2]  # (N, H, W)
    # the Sobel kernel's weights on one side sum to 4
    magnitude: npt.NDArray[np.float32] = (np.hypot(gx, gy) / 4).astype(np.float32)
    return magnitude


# ========================================================================= FoggyCache
def low_level_features(
    inputs: npt.ArrayLike, thumbnail: int = 8, dim: int = 64, seed: int = 0
) -> npt.NDArray[np.float64]:
    """FoggyCache's low-level feature vectors: image thumbnails or random projections.

    Images ``(N, H, W, C)`` become grey ``thumbnail x thumbnail`` area averages:
    cheap, and unlike the authors' mean SIFT descriptor they keep *where*
    things are (what a count or a detection depends on) and are tolerant of a
    one-pixel shift, which moves a raw-pixel vector far. Any other array is
    flattened and, when longer than ``dim``, multiplied by a fixed Gaussian
    matrix scaled by ``1 / sqrt(dim)``: by Johnson–Lindenstrauss this keeps L2
    distances up to a small factor, so LSH and KNN on the projection behave as
    on the raw data (the thesis' low-level baseline uses raw motion signals and
    feature maps).

    Parameters
    ----------
    inputs : array_like
        ``(N, ...)``, ``N >= 1``, ``uint8`` (divided by 255) or floats.
    thumbnail : int
        Side of the image thumbnail (>= 1): ``thumbnail ** 2`` features.
    dim : int
        Length of a projected non-image input (>= 1).
    seed : int
        Seed of the projection matrix.

    Returns
    -------
    numpy.ndarray
        ``(N, thumbnail ** 2)`` for images, ``(N, min(dim, size))`` otherwise;
        float64.
    """
    check_positive_int("thumbnail", thumbnail)
    check_positive_int("dim", dim)
    frames = _as_stream("inputs", inputs)
    if _is_image("inputs", frames):
        grey = torch.from_numpy(np.ascontiguousarray(_grey(frames)))[:, None]
        thumbs = F.adaptive_avg_pool2d(grey, int(thumbnail))  # (N, 1, t, t)
        return thumbs.reshape(len(frames), -1).numpy().astype(np.float64)
    flat = frames.reshape(len(frames), -1).astype(np.float64)  # (N, P)
    if flat.shape[1] <= dim:
        return flat
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((flat.shape[1], int(dim))) / np.sqrt(dim)
    projected: npt.NDArray[np.float64] = flat @ projection  # (N, dim)
    return projected


@dataclass(frozen=True)
class LSHLookup:
    """The answer of :meth:`LSHCache.lookup` for one query.

    Attributes
    ----------
    hit : bool
        At least ``K`` candidates, and ``theta >= θ_T``: the value may be reused.
    value : float
        Majority result of the ``K`` nearest candidates (0 with no candidate).
    theta : float
        Homogeneity: the share of those neighbours that voted for ``value``.
    candidates : int
        Cached entries the LSH tables returned for the query.
    distance : float
        Euclidean distance to the nearest candidate (``inf`` with none).
    """

    hit: bool
    value: float
    theta: float
    candidates: int
    distance: float


class LSHCache:
    """FoggyCache's cache: p-stable LSH candidates, then an H-kNN vote.

    **Hashing.** ``L`` tables, each keyed by ``M`` p-stable hashes
    ``floor(a . v / r + u)``, ``a ~ N(0, I)``, ``u ~ U[0, 1)`` (Datar et al.,
    the L2 scheme FoggyCache builds on); the candidates of a query are the
    entries sharing its bucket in any table, so an exact duplicate of a key
    always is one. The bucket width ``r`` is ``bucket_width`` when given, else
    adaptive, as A-LSH adapts it to the data: ``width_factor`` times the median
    distance from a cached key to its ``K``-th nearest distinct key (a sample of
    256 keys), re-estimated whenever as many entries were inserted as the cache
    held at the last estimate (the cache doubled; once full, every ``capacity``
    insertions). With ``r ≈ 4 d_K``, ``M = 4`` and ``L = 8`` a neighbour at
    distance ``d_K`` shares a bucket with probability ~0.99. Exact duplicates
    are left out of the distances (they share every bucket anyway). Until
    ``K + 1`` entries are cached (or while all are equal), every entry is a
    candidate.

    **Vote (H-kNN).** The ``K`` nearest candidates (equal distances: the lower
    slot) vote with weight 1; the majority result (a tie goes to the nearest
    neighbour's) has homogeneity ``θ`` = its share of the votes. A lookup hits
    when there are at least ``K`` candidates and ``θ >= θ_T``: a sparse or
    mixed neighbourhood runs the model.

    **Replacement.** Least frequently used, as :class:`~edgecloud.infi.cache.
    HKNNCache` (a hit adds a use to each neighbour that voted for the served
    result; ties: the oldest insertion), so FoggyCache and InFi-Reuse differ
    only in features and lookup.

    Parameters
    ----------
    capacity : int
        Most entries held (>= ``k``).
    dim : int
        Feature length ``D``.
    k : int
        Neighbours ``K`` that vote (the thesis uses 10).
    theta_threshold : float
        ``θ_T`` in ``[0, 1]``.
    num_tables : int
        Hash tables ``L``.
    hashes_per_table : int
        Hashes ``M`` per table key.
    width_factor : float
        Adaptive bucket width over the median ``K``-NN distance (finite, > 0).
    bucket_width : float | None
        A fixed bucket width (finite, > 0); ``None`` adapts it.
    result_type : {"int", "float"}
        Class indices or counts (int64), or discretised real results (float64).
    seed : int
        Seed of the hash functions and of the keys sampled for the width.
    """

    def __init__(
        self,
        capacity: int,
        dim: int,
        k: int = 10,
        theta_threshold: float = 0.5,
        num_tables: int = 8,
        hashes_per_table: int = 4,
        width_factor: float = 4.0,
        bucket_width: float | None = None,
        result_type: ResultType = "int",
        seed: int = 0,
    ) -> None:
        for name, value in (
            ("capacity", capacity),
            ("dim", dim),
            ("k", k),
            ("num_tables", num_tables),
            ("hashes_per_table", hashes_per_table),
        ):
            check_positive_int(name, value)
        if k > capacity:
            raise ValueError(f"k is {k}; expected at most capacity ({capacity})")
        theta = check_real("theta_threshold", theta_threshold)
        if not 0.0 <= theta <= 1.0:
            raise ValueError(f"theta_threshold is {theta}; expected a value in [0, 1]")
        factor = _check_width("width_factor", width_factor)
        width = (
            None if bucket_width is None else _check_width("bucket_width", bucket_width)
        )
        if result_type not in RESULT_TYPES:
            raise ValueError(
                f"result_type is {result_type!r}; expected one of {RESULT_TYPES}"
            )
        self.capacity, self.dim, self.k = int(capacity), int(dim), int(k)
        self.theta_threshold = theta
        self.num_tables, self.hashes_per_table = int(num_tables), int(hashes_per_table)
        self.width_factor = factor
        self.result_type: ResultType = result_type
        rng = np.random.default_rng(seed)
        hashes = self.num_tables * self.hashes_per_table
        self._projections = rng.standard_normal((hashes, self.dim))  # (L * M, D)
        self._offsets = rng.random(hashes)  # (L * M,) in [0, 1)
        self._sampler = np.random.default_rng([seed, 1])
        self._keys = np.zeros((self.capacity, self.dim))  # (S, D)
        dtype = np.int64 if result_type == "int" else np.float64
        self._values: npt.NDArray[Any] = np.zeros(self.capacity, dtype=dtype)
        self._codes = np.zeros(
            (self.capacity, self.num_tables, self.hashes_per_table), dtype=np.int64
        )  # (S, L, M)
        self._uses = np.zeros(self.capacity, dtype=np.int64)
        self._inserted = np.zeros(self.capacity, dtype=np.int64)
        self._tables: list[dict[bytes, set[int]]] = [{} for _ in range(num_tables)]
        self._adaptive = width is None
        self._width = width
        self._size = 0
        self._next_order = 0
        self._estimated_size = 0  # entries at the last width estimate
        self._since_estimate = 0

    def __len__(self) -> int:
        return self._size

    @property
    def bucket_width(self) -> float | None:
        """The current bucket width ``r`` (``None``: every entry is a candidate)."""
        return self._width

    @property
    def values(self) -> npt.NDArray[Any]:
        """``(len,)`` copy of the cached results, in slot order."""
        return self._values[: self._size].copy()

    def candidates(self, query: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Slots of the entries sharing a bucket with ``query`` in some table.

        Parameters
        ----------
        query : array_like of float
            ``(D,)`` finite feature vector.

        Returns
        -------
        numpy.ndarray
            Sorted int64 slots.
        """
        return self._candidates(_as_vector("query", query, self.dim))

    def lookup(self, query: npt.ArrayLike, *, count_uses: bool = True) -> LSHLookup:
        """H-kNN vote among the LSH candidates of one feature vector.

        Parameters
        ----------
        query : array_like of float
            ``(D,)`` finite feature vector.
        count_uses : bool
            Add an LFU use to the voters of a hit; ``False`` only inspects.

        Returns
        -------
        LSHLookup
        """
        q = _as_vector("query", query, self.dim)
        slots = self._candidates(q)
        if len(slots) == 0:
            return LSHLookup(False, 0.0, 0.0, 0, float("inf"))
        dist = np.sqrt(((self._keys[slots] - q) ** 2).sum(axis=1))  # (C,)
        # slots ascend, so a stable sort breaks distance ties by slot
        order = np.argsort(dist, kind="stable")[: self.k]
        votes = self._values[slots[order]]  # (K,) nearest first
        support = (votes[:, None] == votes[None, :]).sum(axis=1)  # (K,)
        best = int(support.argmax())  # first maximum: the nearest tied result
        theta = float(support[best]) / len(votes)
        hit = len(slots) >= self.k and theta >= self.theta_threshold
        if hit and count_uses:
            self._uses[slots[order][votes == votes[best]]] += 1
        return LSHLookup(
            hit, votes[best].item(), theta, len(slots), float(dist[order[0]])
        )

    def insert(self, key: npt.ArrayLike, value: float) -> None:
        """Cache ``value`` under ``key``, evicting the least used entry when full.

        Parameters
        ----------
        key : array_like of float
            ``(D,)`` finite feature vector.
        value : int or float
            The model's result: an integer (``result_type="int"``) or a finite
            number.
        """
        vector = _as_vector("key", key, self.dim)
        result = _check_result(value, self.result_type)
        if self._size < self.capacity:
            slot = self._size
            self._size += 1
        else:
            # fewest uses, then the oldest insertion
            slot = int(np.lexsort((self._inserted, self._uses))[0])
            self._unlink(slot)
        self._keys[slot] = vector
        self._values[slot] = result
        self._uses[slot] = 0
        self._inserted[slot] = self._next_order
        self._next_order += 1
        if self._width is not None:
            self._codes[slot] = self._hash(vector[None])[0]
            self._link(slot)
        self._since_estimate += 1
        due = self._since_estimate >= self._estimated_size
        if self._adaptive and self._size > self.k and due:
            self._estimate_width()

    # ------------------------------------------------------------------ internals
    def _candidates(self, q: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        if self._width is None:
            return np.arange(self._size, dtype=np.int64)
        codes = self._hash(q[None])[0]  # (L, M)
        found: set[int] = set()
        for table, code in zip(self._tables, codes, strict=True):
            found.update(table.get(code.tobytes(), ()))
        return np.array(sorted(found), dtype=np.int64)

    def _hash(self, vectors: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """``(B, L, M)`` bucket codes of ``(B, D)`` vectors at the current width."""
        assert self._width is not None
        scaled = vectors @ self._projections.T / self._width + self._offsets
        codes = np.floor(np.clip(scaled, -_CODE_LIMIT, _CODE_LIMIT)).astype(np.int64)
        return codes.reshape(len(vectors), self.num_tables, self.hashes_per_table)

    def _link(self, slot: int) -> None:
        for table, code in zip(self._tables, self._codes[slot], strict=True):
            table.setdefault(code.tobytes(), set()).add(slot)

    def _unlink(self, slot: int) -> None:
        if self._width is None:
            return
        for table, code in zip(self._tables, self._codes[slot], strict=True):
            bucket = table[code.tobytes()]
            bucket.discard(slot)
            if not bucket:
                del table[code.tobytes()]

    def _estimate_width(self) -> None:
        """Set ``r`` from the cache's ``K``-NN distances and rehash every entry.

        Exact duplicates are left out of the distances: they share every bucket
        whatever ``r`` is, and a stream of still frames would otherwise drive the
        median, and ``r``, to 0.
        """
        n = self._size
        keys = self._keys[:n]
        rows = self._sampler.choice(n, size=min(n, _WIDTH_SAMPLE), replace=False)
        kth = []
        for row in rows:
            dist = np.sqrt(((keys - keys[row]) ** 2).sum(axis=1))  # (n,)
            distinct = dist[dist > 0.0]  # the key itself and its duplicates are 0
            if len(distinct):
                kk = min(self.k, len(distinct))
                kth.append(float(np.partition(distinct, kk - 1)[kk - 1]))
        self._width = self.width_factor * float(np.median(kth)) if kth else None
        self._tables = [{} for _ in range(self.num_tables)]
        if self._width is not None:
            self._codes[:n] = self._hash(keys)
            for slot in range(n):
                self._link(slot)
        self._estimated_size = n
        self._since_estimate = 0


class FoggyCache:
    """FoggyCache over a recorded stream: a miss runs the model and inserts.

    Parameters
    ----------
    features : array_like of float
        ``(N, D)`` low-level feature vectors of the stream, in arrival order
        (:func:`low_level_features`, or SIFT / MFCC from elsewhere), finite.
    results : array_like
        ``(N,)`` the model's result on every input (integers, or finite numbers
        with ``result_type="float"``).
    capacity : int
        Cache size (the thesis sets it from a ratio of the stream, or 1000).
    k : int
        Neighbours that vote.
    num_tables, hashes_per_table, width_factor, bucket_width, result_type, seed
        The :class:`LSHCache` settings.
    warm_up : bool
        Fill the cache before the first lookup, as
        :func:`~edgecloud.infi.cache.reuse_stream` does.
    """

    def __init__(
        self,
        features: npt.ArrayLike,
        results: npt.ArrayLike,
        capacity: int,
        k: int = 10,
        *,
        num_tables: int = 8,
        hashes_per_table: int = 4,
        width_factor: float = 4.0,
        bucket_width: float | None = None,
        result_type: ResultType = "int",
        seed: int = 0,
        warm_up: bool = True,
    ) -> None:
        arr: npt.NDArray[Any] = np.asarray(features)
        if arr.ndim != 2 or len(arr) == 0 or arr.shape[1] == 0:
            raise ValueError(
                f"features has shape {arr.shape}; expected (N, D) vectors, N, D >= 1"
            )
        self._settings: dict[str, Any] = {
            "capacity": capacity,
            "dim": arr.shape[1],
            "k": k,
            "num_tables": num_tables,
            "hashes_per_table": hashes_per_table,
            "width_factor": width_factor,
            "bucket_width": bucket_width,
            "result_type": result_type,
            "seed": seed,
        }
        self.new_cache(0.5)  # refuses bad settings now, not at the first serve
        self.features = np.stack(
            [
                _as_vector(f"features[{i}]", row, arr.shape[1])
                for i, row in enumerate(arr)
            ]
        )  # (N, D) float64
        self.results = as_results("results", results, len(arr), result_type)
        self.warm_up = bool(warm_up)

    def new_cache(self, theta_threshold: float) -> LSHCache:
        """An empty :class:`LSHCache` with this replay's settings and ``θ_T``."""
        return LSHCache(theta_threshold=theta_threshold, **self._settings)

    def serve(self, theta: float) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
        """Replay the stream on a fresh cache with homogeneity threshold ``theta``.

        Parameters
        ----------
        theta : float
            ``θ_T`` in ``[0, 1]``.

        Returns
        -------
        served : numpy.ndarray
            ``(N,)`` the result served for each input.
        filtered : numpy.ndarray
            ``(N,)`` bool, True where a cached result was served.
        """
        cache = self.new_cache(theta)
        served = self.results.copy()
        filtered = np.zeros(len(served), dtype=np.bool_)
        for i, vector in enumerate(self.features):  # each miss changes later lookups
            if self.warm_up and len(cache) < cache.capacity:
                cache.insert(vector, served[i])
                continue
            answer = cache.lookup(vector)
            if answer.hit:
                served[i] = answer.value
                filtered[i] = True
            else:
                cache.insert(vector, self.results[i])
        return served, filtered


# ====================================================================== FilterForward
class MicroClassifier(nn.Module):
    """FilterForward's full-frame micro-classifier: 1x1 convolutions, global max.

    ``(N, C, h, w)`` feature maps -> ReLU(1x1 conv to ``hidden``) -> 1x1 conv to
    one logit per location -> max over locations: "the event is somewhere in
    the frame". The output is therefore the logit of **relevance** (the thesis'
    ``z``: not redundant); a max cannot say "nowhere", so it is not trained on
    the skip label directly (:class:`FilterForward` takes the complement). The
    authors' code ends with a ReLU before the sigmoid, which would keep every
    probability at 0.5 or above; here the logit is left free.

    Parameters
    ----------
    in_channels : int
        Channels ``C`` of the extractor's feature maps.
    hidden : int
        Channels of the hidden 1x1 convolution (32 in FF's configurations).
    """

    def __init__(self, in_channels: int, hidden: int = 32) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("hidden", hidden)
        self.hidden = nn.Conv2d(in_channels, hidden, kernel_size=1)
        self.score = nn.Conv2d(hidden, 1, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Relevance logits ``(N,)`` of ``(N, C, h, w)`` feature maps."""
        x = F.relu(self.hidden(features))  # (N, hidden, h, w)
        scores: torch.Tensor = self.score(x)  # (N, 1, h, w)
        return scores.amax(dim=(1, 2, 3))


class FilterForward:
    """FilterForward skip filter: a frozen extractor and a trained micro-classifier.

    The extractor (FF: a pretrained MobileNet's intermediate layer) is any torch
    module mapping a batch to ``(N, C, h, w)`` maps or ``(N, C)`` vectors (read
    as ``1 x 1`` maps, where the micro-classifier is an MLP). It is never
    trained: it runs in eval mode without gradients, its own mode restored
    after. Only the micro-classifier learns. It detects the relevant event, as
    FF's micro-classifiers do: it is trained on ``1 - skip label`` and the skip
    probability is ``1 - sigmoid(logit)``.

    Parameters
    ----------
    extractor : torch.nn.Module
        The frozen feature extractor.
    in_channels : int
        Channels ``C`` the extractor outputs.
    hidden : int
        Hidden channels of the micro-classifier.
    seed : int
        Seed of the micro-classifier's initialisation (the global torch RNG is
        left as it was).
    """

    def __init__(
        self, extractor: nn.Module, in_channels: int, hidden: int = 32, seed: int = 0
    ) -> None:
        if not isinstance(extractor, nn.Module):
            raise ValueError(
                f"extractor is a {type(extractor).__name__}; expected a torch.nn.Module"
            )
        check_positive_int("in_channels", in_channels)
        self.extractor = extractor
        self.in_channels = int(in_channels)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.micro_classifier = MicroClassifier(self.in_channels, hidden)

    def features(
        self, inputs: npt.ArrayLike | torch.Tensor, batch_size: int = 256
    ) -> torch.Tensor:
        """The frozen extractor's ``(N, C, h, w)`` maps of a batch.

        Parameters
        ----------
        inputs : array_like or torch.Tensor
            ``(N, ...)`` in the extractor's layout, ``N >= 1`` (floats become
            float32 and must be finite).
        batch_size : int
            Inputs per forward pass.

        Returns
        -------
        torch.Tensor
            ``(N, C, h, w)`` float32, without gradients.
        """
        check_positive_int("batch_size", batch_size)
        batch = _as_batch("inputs", inputs)
        chunks = []
        with inference_mode(self.extractor):
            for start in range(0, len(batch), batch_size):
                chunks.append(self._maps(batch[start : start + batch_size]))
        return torch.cat(chunks)

    def fit(
        self,
        inputs: npt.ArrayLike | torch.Tensor,
        labels: npt.ArrayLike,
        epochs: int = 20,
        lr: float = 1e-3,
        batch_size: int = 32,
        seed: int = 0,
    ) -> list[float]:
        """Train the micro-classifier with BCE on skip labels.

        The extractor runs once over ``inputs`` (FF shares one base network's
        features among its micro-classifiers); the micro-classifier then takes
        RMSprop steps (FF's optimiser) on shuffled mini-batches, its relevance
        logit against ``1 - labels``.

        Parameters
        ----------
        inputs : array_like or torch.Tensor
            ``(N, ...)`` training inputs in the extractor's layout.
        labels : array_like
            ``(N,)`` 1 (or True) where the input is redundant (skip), else 0.
        epochs : int
            Passes over the data (>= 1).
        lr : float
            Learning rate (finite, > 0).
        batch_size : int
            Inputs per step (>= 1).
        seed : int
            Seeds the shuffling: the same data, seeds and settings give the same
            weights and losses.

        Returns
        -------
        list[float]
            Mean training BCE of each epoch.
        """
        check_positive_int("epochs", epochs)
        check_positive_int("batch_size", batch_size)
        rate = check_real("lr", lr)
        if not (np.isfinite(rate) and rate > 0.0):
            raise ValueError(f"lr is {rate}; expected a finite number > 0")
        maps = self.features(inputs)  # (N, C, h, w)
        relevant = 1.0 - torch.from_numpy(_skip_labels(labels, len(maps)))  # (N,)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.RMSprop(self.micro_classifier.parameters(), lr=rate)
        history: list[float] = []
        self.micro_classifier.train()
        for _ in range(epochs):
            order = torch.randperm(len(maps), generator=generator)
            total = 0.0
            for start in range(0, len(maps), batch_size):
                rows = order[start : start + batch_size]
                optimizer.zero_grad()
                logits = self.micro_classifier(maps[rows])
                loss = F.binary_cross_entropy_with_logits(logits, relevant[rows])
                torch.autograd.backward(loss)
                optimizer.step()
                total += float(loss.item()) * len(rows)
            history.append(total / len(maps))
        self.micro_classifier.eval()
        return history

    def skip_probability(
        self, inputs: npt.ArrayLike | torch.Tensor, batch_size: int = 256
    ) -> npt.NDArray[np.float64]:
        """Probability that each input is redundant (1 = skip it).

        Parameters
        ----------
        inputs : array_like or torch.Tensor
            ``(N, ...)`` in the extractor's layout.
        batch_size : int
            Inputs per forward pass.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` float64 in ``[0, 1]``, for
            :func:`~edgecloud.infi.thresholds.choose_skip_threshold`.
        """
        maps = self.features(inputs, batch_size)
        with inference_mode(self.micro_classifier):
            logits = torch.cat(
                [
                    self.micro_classifier(maps[start : start + batch_size])
                    for start in range(0, len(maps), batch_size)
                ]
            )
        # sigmoid(-z) = 1 - sigmoid(z), without rounding a confident 1 - p to 0
        out: npt.NDArray[np.float64] = torch.sigmoid(-logits).double().numpy()
        return out

    def _maps(self, batch: torch.Tensor) -> torch.Tensor:
        """The extractor's output on one batch as checked ``(B, C, h, w)`` maps."""
        out = self.extractor(batch)
        if not isinstance(out, torch.Tensor):
            raise ValueError(
                f"extractor returned a {type(out).__name__}; expected a tensor"
            )
        if out.dim() == 2:
            out = out[:, :, None, None]  # vectors as 1 x 1 maps
        if out.dim() != 4 or out.shape[0] != len(batch):
            raise ValueError(
                f"extractor output has shape {tuple(out.shape)}; expected "
                f"({len(batch)}, {self.in_channels}, h, w) or "
                f"({len(batch)}, {self.in_channels})"
            )
        if out.shape[1] != self.in_channels:
            raise ValueError(
                f"extractor output has {out.shape[1]} channels; expected "
                f"in_channels ({self.in_channels})"
            )
        if not bool(torch.isfinite(out).all()):
            raise ValueError("extractor output holds NaN or inf; expected finite maps")
        return out.float()


# ======================================================================== validation
def _as_stream(name: str, inputs: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """``(N, ...)`` uint8 (scaled to ``[0, 1]``) or finite floats as float32."""
    arr: npt.NDArray[Any] = np.asarray(inputs)
    if arr.ndim < 2 or len(arr) == 0:
        raise ValueError(
            f"{name} has shape {arr.shape}; expected a stream (N, ...) of N >= 1 arrays"
        )
    if arr.dtype == np.uint8:
        scaled: npt.NDArray[np.float32] = arr.astype(np.float32) / np.float32(255)
        return scaled
    if arr.dtype.kind != "f":
        raise ValueError(f"{name} has dtype {arr.dtype}; expected uint8 or floats")
    with np.errstate(over="ignore"):
        frames = arr.astype(np.float32)
    bad = ~np.isfinite(frames)
    if bad.any():
        where = ", ".join(str(int(i)) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}[{where}] is {arr[tuple(np.argwhere(bad)[0])]}; expected a "
            "finite float32 number"
        )
    return frames


def _is_image(name: str, frames: npt.NDArray[np.float32]) -> bool:
    """Whether a stream is images ``(N, H, W, C)``; other 4-d arrays are refused."""
    if frames.ndim != 4:
        return False
    if frames.shape[3] not in (1, 3):
        raise ValueError(
            f"{name} has shape {frames.shape}; expected images (N, H, W, C) with C "
            "1 or 3 (reshape other arrays to (N, -1))"
        )
    return True


def _grey(frames: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``(N, H, W)`` luma of ``(N, H, W, C)`` images, ``C`` 1 or 3."""
    if frames.shape[3] == 1:
        return frames[..., 0]
    grey: npt.NDArray[np.float32] = frames @ _LUMA
    return grey


def _check_change(value: object) -> float:
    change = check_real("change", value)
    if not (np.isfinite(change) and change >= 0.0):
        raise ValueError(f"change is {change}; expected a finite number >= 0")
    return change


def _check_width(name: str, value: object) -> float:
    width = check_real(name, value)
    if not (np.isfinite(width) and width > 0.0):
        raise ValueError(f"{name} is {width}; expected a finite number > 0")
    return width


def _as_stream_results(results: npt.ArrayLike, n: int) -> npt.NDArray[Any]:
    """``(n,)`` or ``(n, ...)`` numeric results, floats finite."""
    arr: npt.NDArray[Any] = np.asarray(results)
    if arr.ndim == 0 or len(arr) != n:
        raise ValueError(
            f"results has shape {arr.shape}; expected ({n},) or ({n}, ...): one "
            "per input"
        )
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"results has dtype {arr.dtype}; expected numbers")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        where = ", ".join(str(int(i)) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"results[{where}] is not finite; expected finite results")
    return arr


def _check_result(value: object, result_type: ResultType) -> float:
    """One result for an :class:`LSHCache` of ``result_type``."""
    if result_type == "int":
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"value is {value!r}; expected an integer result")
        return int(value)
    number = check_real("value", value)
    if not np.isfinite(number):
        raise ValueError(f"value is {number}; expected a finite result")
    return number


def _as_vector(name: str, value: npt.ArrayLike, dim: int) -> npt.NDArray[np.float64]:
    """``(dim,)`` finite float64 feature vector."""
    arr: npt.NDArray[Any] = np.asarray(value)
    if arr.shape != (dim,):
        raise ValueError(f"{name} has shape {arr.shape}; expected ({dim},)")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} has dtype {arr.dtype}; expected real numbers")
    vector = arr.astype(np.float64)
    if not np.isfinite(vector).all():
        index = int(np.argmax(~np.isfinite(vector)))
        raise ValueError(
            f"{name}[{index}] is {vector[index]}; expected a finite number"
        )
    return vector


def _as_batch(name: str, inputs: npt.ArrayLike | torch.Tensor) -> torch.Tensor:
    """``(N, ...)`` tensor, ``N >= 1``; floats as float32 and finite."""
    if isinstance(inputs, torch.Tensor):
        batch = inputs
    else:
        arr: npt.NDArray[Any] = np.asarray(inputs)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} has dtype {arr.dtype}; expected numbers")
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        batch = torch.from_numpy(np.ascontiguousarray(arr))
    if batch.dim() == 0 or len(batch) == 0:
        raise ValueError(
            f"{name} has shape {tuple(batch.shape)}; expected a batch (N, ...), N >= 1"
        )
    if batch.is_floating_point():
        batch = batch.float()
        if not bool(torch.isfinite(batch).all()):
            raise ValueError(f"{name} holds NaN or inf; expected finite values")
    return batch


def _skip_labels(labels: npt.ArrayLike, n: int) -> npt.NDArray[np.float32]:
    """``(n,)`` skip labels in {0, 1} as float32."""
    arr: npt.NDArray[Any] = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"labels has shape {arr.shape}; expected ({n},) like inputs")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"labels has dtype {arr.dtype}; expected 0 or 1")
    ok = (arr == 0) | (arr == 1)  # NaN fails both
    if not ok.all():
        index = int(np.argmax(~ok))
        raise ValueError(f"labels[{index}] is {arr[index]}; expected 0 or 1")
    return arr.astype(np.float32)
