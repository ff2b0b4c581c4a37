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
* :func:`plaintext_identical_tensors` — which server-bundle tensors are
  bit-identical to the plaintext weights (and why): a permutation hides a tensor
  only if it moves unequal entries. Under rotary embeddings the key projection's
  output axis only gets a KV-head order, so with one KV head ``k_proj.bias`` is
  always plaintext; small orders (2 KV heads, 2 labels) are the identity often.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from edgecloud.stip.families import Family, family_of
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


@dataclass(frozen=True)
class PlaintextTensor:
    """A server-bundle tensor bit-identical to the plaintext weight it stands for.

    Parameters
    ----------
    key : str
        State-dict key.
    axes : tuple of str or None
        The permutation role of each axis (``families.py``); ``()`` if no rule.
    reason : str
        Why the permutations left it unchanged.
    """

    key: str
    axes: tuple[str | None, ...]
    reason: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready record (``instances.json``)."""
        return {"key": self.key, "axes": list(self.axes), "reason": self.reason}


def _role_orders(role: str, family: Family, config: Any) -> list[tuple[int, int]]:
    """How many orders ``role`` is drawn from, as ``(n, power)``: prod (n!)^power."""
    layout = family.attention_layout(config)
    nkv, hd = layout.num_kv_heads, layout.head_dim
    kv_heads = [(nkv, 1)]
    # query heads: the KV-group order, then an order inside each of the nkv groups
    q_heads = [*kv_heads, (layout.num_heads // nkv, nkv)]
    qk_dims = [] if layout.rotary else [(hd, 1)]  # rotary: dims stay in place
    v_dims = [(hd, 1)]
    mlp, experts = family.mlp_hidden(config), family.num_experts(config)
    orders = {
        "pi": [(int(config.hidden_size), 1)],
        "pool": [(int(config.hidden_size), 1)],
        "pi_c": [(family.num_outputs(config), 1)],
        "q": q_heads + qk_dims,
        "k": kv_heads + qk_dims,
        "v": kv_heads + v_dims,
        "o": q_heads + v_dims,
        "qkv": q_heads + qk_dims + v_dims,
        "mlp": [(mlp, 1)],
        "expert": [(experts, 1)],
        "expert_hidden": [(mlp, experts)],
        "expert_gate_up": [(mlp, experts)],
    }
    return orders[role]


def identity_probability(axes: tuple[str | None, ...], config: Any) -> float:
    """Chance that every permutation on ``axes`` is the identity in one instance.

    The roles on one tensor's axes are drawn independently; ``1.0`` means the
    tensor is never permuted (e.g. ``("k",)`` under rotary with one KV head).
    """
    family = family_of(config)
    roles = {role for role in axes if role is not None}
    terms = [t for role in roles for t in _role_orders(role, family, config)]
    # log10 of the number of orders, without forming n! for a vocabulary-sized n
    log10 = sum(power * math.lgamma(n + 1) for n, power in terms) / math.log(10)
    if log10 < 15:  # small: exact
        orders: int = math.prod(math.factorial(n) ** power for n, power in terms)
        return 1.0 / orders
    return float(10.0**-log10)


def _why(
    key: str, tensor: torch.Tensor, family: Family, config: Any
) -> PlaintextTensor:
    if key in family.client_keys:
        return PlaintextTensor(
            key, (), "client-side weight: the server's zeros equal the plaintext"
        )
    matched = family.rule_for(key)
    if matched is None:
        return PlaintextTensor(key, (), "no STIP rule describes it")
    axes = matched[0].axes
    permuted = [a for a, role in enumerate(axes) if role is not None]
    roles = tuple(role for role in axes if role is not None)
    # Equal slices along every permuted axis: no order can change the tensor
    constant = all(bool((tensor == tensor.narrow(a, 0, 1)).all()) for a in permuted)
    if constant:
        reason = f"constant along its permuted axes {roles}: no order changes it"
        return PlaintextTensor(key, axes, reason)
    probability = identity_probability(axes, config)
    if probability >= 1.0:
        reason = f"the orders on {roles} have one possible value, the identity: "
        reason += "unchanged in every instance"
    else:
        odds = 1.0 / probability if probability > 0 else math.inf
        chance = f"1/{round(odds)}" if odds < 1e6 else f"about 1/{odds:.1e}"
        reason = (
            f"the orders on {roles} leave it unchanged in this instance (all are "
            f"the identity with probability {chance})"
        )
    if family.rotary and set(roles) & {"q", "k"}:
        reason += "; rotary embeddings keep q/k dimensions in place, only heads move"
    return PlaintextTensor(key, axes, reason)


def _plaintext_counterpart(
    key: str, plain: Mapping[str, torch.Tensor], family: Family, config: Any
) -> torch.Tensor:
    if key in plain:
        return plain[key]
    # Tied embeddings: a checkpoint stores the table once; the server's untied
    # head stands for that table.
    if getattr(config, "tie_word_embeddings", False) and family.output == "lm":
        head = next(r.key for r in family.rules if r.axes == ("pi_c", "pi"))
        if key == head and family.client_keys[0] in plain:
            return plain[family.client_keys[0]]
    raise ValueError(
        f"server tensor {key!r} has no plaintext counterpart; expected the "
        "plaintext state dict of the model the bundle was made from"
    )


def plaintext_identical_tensors(
    plain: Mapping[str, torch.Tensor],
    server: Mapping[str, torch.Tensor],
    config: Any,
) -> list[PlaintextTensor]:
    """The server tensors bit-identical to their plaintext counterparts, and why.

    Parameters
    ----------
    plain : Mapping[str, torch.Tensor]
        The developer's plaintext state dict (``model.state_dict()`` or the
        checkpoint's tensors; a tied output head is matched to the embedding).
    server : Mapping[str, torch.Tensor]
        What the server holds: the state dict of the server bundle loaded as
        ``StipServer`` loads it (``bundles.load_checkpoint``).
    config : Any
        The plaintext model's config.

    Returns
    -------
    list of PlaintextTensor
        In the server bundle's key order; empty when every tensor differs.

    Raises
    ------
    ValueError
        If a server tensor has no plaintext counterpart or another shape.
    """
    family = family_of(config)
    found = []
    for key, tensor in server.items():
        reference = _plaintext_counterpart(key, plain, family, config)
        if tuple(reference.shape) != tuple(tensor.shape):
            raise ValueError(
                f"server tensor {key!r} has shape {tuple(tensor.shape)}, the "
                f"plaintext one {tuple(reference.shape)}; expected equal shapes"
            )
        if torch.equal(tensor.cpu(), reference.detach().cpu().to(tensor.dtype)):
            found.append(_why(key, tensor, family, config))
    return found
