"""Feature-space permutations: conventions, generation, attention-aware layouts.

Convention used everywhere in ``stip/``: a permutation ``p`` is an index array and
"``x`` permuted by ``p``" is ``x[..., p]`` (new position ``j`` holds old index
``p[j]``), which is ``x @ P`` for the permutation matrix with ``P[p[j], j] = 1``.
A weight is permuted along an axis with ``index_select(axis, p)``; the inverse is
:func:`inverse`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IndexArray = npt.NDArray[np.int64]


def random_permutation(n: int, rng: np.random.Generator) -> IndexArray:
    """A uniformly random permutation of ``range(n)``."""
    return rng.permutation(n).astype(np.int64)


def identity(n: int) -> IndexArray:
    """The identity permutation of ``range(n)``."""
    return np.arange(n, dtype=np.int64)


def inverse(p: IndexArray) -> IndexArray:
    """``q`` with ``x[..., p][..., q] == x``."""
    q = np.empty_like(p)
    q[p] = np.arange(len(p), dtype=np.int64)
    return q


def is_permutation(p: npt.ArrayLike, n: int) -> bool:
    """Whether ``p`` is a permutation of ``range(n)``."""
    arr = np.asarray(p)
    return arr.shape == (n,) and bool(np.array_equal(np.sort(arr), np.arange(n)))


@dataclass(frozen=True)
class AttentionLayout:
    """Head structure of one attention block.

    Parameters
    ----------
    num_heads : int
        Query heads.
    num_kv_heads : int
        Key/value heads (``< num_heads`` is grouped-query attention).
    head_dim : int
        Dimensions per head.
    rotary : bool
        Rotary position embeddings rotate fixed pairs of dimensions inside each
        query/key head, so those dimensions must stay in place.
    """

    num_heads: int
    num_kv_heads: int
    head_dim: int
    rotary: bool

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} is not a multiple of "
                f"num_kv_heads={self.num_kv_heads}; expected grouped heads"
            )


@dataclass(frozen=True)
class AttentionPermutations:
    """Output permutations of the q, k, v projections and the input of ``W_o``.

    Whole heads move (keys/values by a KV-head permutation, queries with their KV
    group, plus an order inside each group); the dimensions inside a q/k head
    move together by one permutation (identity under rotary embeddings), inside a
    v head by another, and ``W_o`` reads what the value heads wrote.
    """

    q: IndexArray  # (num_heads * head_dim,)
    k: IndexArray  # (num_kv_heads * head_dim,)
    v: IndexArray  # (num_kv_heads * head_dim,)
    o: IndexArray  # (num_heads * head_dim,) the input order of W_o


def attention_permutations(
    layout: AttentionLayout, rng: np.random.Generator
) -> AttentionPermutations:
    """Random head-preserving permutations for one attention block."""
    nh, nkv, hd = layout.num_heads, layout.num_kv_heads, layout.head_dim
    group = nh // nkv
    kv_heads = random_permutation(nkv, rng)
    in_group = [random_permutation(group, rng) for _ in range(nkv)]
    # Query head order: new KV group j holds old KV group kv_heads[j]; inside it the
    # group's query heads in a secret order.
    q_heads = np.array(
        [
            kv_heads[j] * group + in_group[j][r]
            for j in range(nkv)
            for r in range(group)
        ],
        dtype=np.int64,
    )
    qk_dims = identity(hd) if layout.rotary else random_permutation(hd, rng)
    v_dims = random_permutation(hd, rng)

    def expand(heads: IndexArray, dims: IndexArray) -> IndexArray:
        return (heads[:, None] * hd + dims[None, :]).reshape(-1).astype(np.int64)

    return AttentionPermutations(
        q=expand(q_heads, qk_dims),
        k=expand(kv_heads, qk_dims),
        v=expand(kv_heads, v_dims),
        o=expand(q_heads, v_dims),
    )
