"""What STIP hides and what it does not: measures and working attacks.

* :func:`distance_correlation` (thesis Fig. 4.6). Computed per vector (the ``d``
  coordinates of ``x`` against those of ``x @ pi``) it is low; computed across
  samples it is exactly 1, because a permutation is an isometry: every distance,
  cluster and nearest neighbour of the embeddings survives. Both are reported.
* :func:`recover_permutation` — known-plaintext attack (a): given ``x`` and
  ``x @ pi`` for a handful of vectors, match columns and read off ``pi``.
* :func:`plaintext_from_permuted` — attack (b): ``pi`` and ``pi_c`` make the
  permuted server model a plaintext model, because the hidden permutations are
  symmetries of the network; nothing else is needed.
* :func:`identify_tokens` — attack (c): a server that knows the (public)
  embedding table identifies each token of ``x @ pi`` by its sorted values.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from edgecloud.stip.permutations import IndexArray

FloatArray = npt.NDArray[np.float64]


def _centred_distances(samples: FloatArray) -> FloatArray:
    # (n, k) samples -> (n, n) doubly centred Euclidean distance matrix
    d = np.sqrt(((samples[:, None, :] - samples[None, :, :]) ** 2).sum(-1))
    centred: FloatArray = d - d.mean(0, keepdims=True) - d.mean(1, keepdims=True)
    centred += d.mean()
    return centred


def distance_correlation(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Székely's distance correlation of paired samples ``x (n, p)``, ``y (n, q)``.

    1-D inputs are treated as ``n`` scalar samples. 0 means independent, 1 means
    one is a similarity transform of the other.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    a = a[:, None] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    if len(a) != len(b):
        raise ValueError(f"x has {len(a)} samples, y {len(b)}; expected equal")
    ca, cb = _centred_distances(a), _centred_distances(b)
    dcov = (ca * cb).mean()
    dvar = np.sqrt((ca * ca).mean() * (cb * cb).mean())
    return float(np.sqrt(max(dcov, 0.0) / dvar)) if dvar > 0 else 0.0


def per_vector_distance_correlation(x: torch.Tensor, permuted: torch.Tensor) -> float:
    """Mean over vectors ``i`` of dCor(coordinates of ``x_i``, of ``x_i @ pi``)."""
    xs = x.reshape(-1, x.shape[-1]).double().numpy()
    ys = permuted.reshape(-1, permuted.shape[-1]).double().numpy()
    return float(
        np.mean([distance_correlation(a, b) for a, b in zip(xs, ys, strict=True)])
    )


def across_samples_distance_correlation(
    x: torch.Tensor, permuted: torch.Tensor
) -> float:
    """Distance correlation with vectors as samples: 1 for any permutation."""
    xs = x.reshape(-1, x.shape[-1]).double().numpy()
    ys = permuted.reshape(-1, permuted.shape[-1]).double().numpy()
    return distance_correlation(xs, ys)


def recover_permutation(plain: torch.Tensor, permuted: torch.Tensor) -> IndexArray:
    """Attack (a): ``pi`` from known pairs ``(x, x @ pi)`` by column matching.

    ``plain`` and ``permuted`` are ``(n, d)``; a few random vectors make every
    column unique. Returns ``p`` with ``plain[:, p] == permuted``.
    """
    a = plain.reshape(-1, plain.shape[-1]).double()
    b = permuted.reshape(-1, permuted.shape[-1]).double()
    # (d, d) squared distances between plain columns and permuted columns
    cost = torch.cdist(b.T.contiguous(), a.T.contiguous())
    return cost.argmin(dim=1).numpy().astype(np.int64)


def plaintext_from_permuted(
    permuted_output: torch.Tensor, pi_c: IndexArray
) -> torch.Tensor:
    """Attack (b), last step: with ``pi_c`` the server reads real outputs.

    Together with ``pi`` (for the inputs) the permuted model *is* the plaintext
    model up to these two orders: ``F'(x @ pi) @ pi_c^T == F(x)`` for every ``x``.
    """
    inverse = np.empty_like(pi_c)
    inverse[pi_c] = np.arange(len(pi_c))
    return permuted_output.index_select(-1, torch.from_numpy(inverse))


def identify_tokens(
    permuted: torch.Tensor, embedding_table: torch.Tensor
) -> npt.NDArray[np.int64]:
    """Attack (c): token ids of ``x @ pi`` ``(n, d)`` from a known table ``(V, d)``.

    Sorting a vector's values removes any feature permutation, so the sorted
    values of ``x @ pi`` equal those of exactly one row of the table.
    """
    keys = torch.sort(embedding_table.double(), dim=-1).values  # (V, d)
    queries = torch.sort(
        permuted.reshape(-1, permuted.shape[-1]).double(), dim=-1
    ).values
    return torch.cdist(queries, keys).argmin(dim=1).numpy().astype(np.int64)
