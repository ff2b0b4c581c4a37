"""Flower's built-in Message-API strategies, chosen by name, with hyper-parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from flwr.app import MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    QFedAvg,
    Strategy,
)

from edgecloud.protocol import ARRAYS, CONFIG, INITIAL_LOSS, NUM_EXAMPLES

MetricsAggregator = Callable[[list[RecordDict], str], MetricRecord]


@dataclass(frozen=True)
class BaselineParams:
    """Sampling and hyper-parameters of the FL baselines (from the run config).

    ``fedopt_*`` feed FedAdam / FedYogi (FedAdagrad: eta and tau only);
    ``server_lr`` and ``server_momentum`` feed FedAvgM; ``client_lr`` is
    q-FedAvg's Lipschitz estimate ``L = 1 / client_lr``.
    """

    fraction_train: float
    fraction_evaluate: float
    min_available_nodes: int
    client_lr: float = 0.05
    proximal_mu: float = 0.01
    server_lr: float = 1.0
    server_momentum: float = 0.9
    fedopt_eta: float = 0.01
    fedopt_beta_1: float = 0.9
    fedopt_beta_2: float = 0.99
    fedopt_tau: float = 1e-3
    trimmed_beta: float = 0.2
    num_malicious_nodes: int = 0
    num_nodes_to_select: int = 1
    qffl_q: float = 0.1


class _CommonKwargs(TypedDict):
    fraction_train: float
    fraction_evaluate: float
    min_train_nodes: int
    min_evaluate_nodes: int
    min_available_nodes: int
    weighted_by_key: str
    arrayrecord_key: str
    configrecord_key: str
    train_metrics_aggr_fn: MetricsAggregator | None


def _common(
    p: BaselineParams, train_metrics_aggr_fn: MetricsAggregator | None
) -> _CommonKwargs:
    # min_*_nodes = 1: fraction-train / fraction-evaluate decide the sample size
    # (Flower's default of 2 would silently override a fraction of 0.1 on 10 nodes).
    return {
        "fraction_train": p.fraction_train,
        "fraction_evaluate": p.fraction_evaluate,
        "min_train_nodes": 1,
        "min_evaluate_nodes": 1,
        "min_available_nodes": p.min_available_nodes,
        "weighted_by_key": NUM_EXAMPLES,
        "arrayrecord_key": ARRAYS,
        "configrecord_key": CONFIG,
        "train_metrics_aggr_fn": train_metrics_aggr_fn,
    }


_ADAPTIVE = {"fedadam": FedAdam, "fedyogi": FedYogi}


def build_baseline(
    name: str,
    params: BaselineParams,
    train_metrics_aggr_fn: MetricsAggregator | None = None,
) -> Strategy:
    """Instantiate the Flower strategy called ``name``.

    Parameters
    ----------
    name : str
        One of :data:`BASELINE_NAMES`.
    params : BaselineParams
        Sampling and hyper-parameters.
    train_metrics_aggr_fn : callable, optional
        Aggregation of training MetricRecords (Flower's weighted mean if None).

    Notes
    -----
    What the ClientApp must do for each: reply to ``train`` with exactly one
    ArrayRecord and one MetricRecord holding ``num-examples``; for ``fedprox``,
    add ``proximal-mu / 2 * ||w - w_global||^2`` to the local loss; for
    ``qfedavg``, report ``initial-loss``, the loss of the received model on the
    local training data before any step.
    """
    common = _common(params, train_metrics_aggr_fn)
    if name == "fedavg":
        return FedAvg(**common)
    if name == "fedprox":
        return FedProx(**common, proximal_mu=params.proximal_mu)
    if name == "fedavgm":
        return FedAvgM(
            **common,
            server_learning_rate=params.server_lr,
            server_momentum=params.server_momentum,
        )
    if name in _ADAPTIVE:
        return _ADAPTIVE[name](
            **common,
            eta=params.fedopt_eta,
            eta_l=params.client_lr,
            beta_1=params.fedopt_beta_1,
            beta_2=params.fedopt_beta_2,
            tau=params.fedopt_tau,
        )
    if name == "fedadagrad":  # no moment decay: Adagrad accumulates squared deltas
        return FedAdagrad(
            **common,
            eta=params.fedopt_eta,
            eta_l=params.client_lr,
            tau=params.fedopt_tau,
        )
    if name == "fedmedian":
        return FedMedian(**common)
    if name == "fedtrimmedavg":
        return FedTrimmedAvg(**common, beta=params.trimmed_beta)
    if name == "krum":
        return Krum(**common, num_malicious_nodes=params.num_malicious_nodes)
    if name == "multikrum":
        return MultiKrum(
            **common,
            num_malicious_nodes=params.num_malicious_nodes,
            num_nodes_to_select=params.num_nodes_to_select,
        )
    if name == "bulyan":
        return Bulyan(**common, num_malicious_nodes=params.num_malicious_nodes)
    if name == "qfedavg":
        return QFedAvg(
            client_learning_rate=params.client_lr,
            q=params.qffl_q,
            train_loss_key=INITIAL_LOSS,
            **common,
        )
    raise ValueError(
        f"strategy {name!r} unknown; expected one of: {', '.join(BASELINE_NAMES)}"
    )


BASELINE_NAMES: tuple[str, ...] = (
    "fedavg",
    "fedavgm",
    "fedprox",
    "fedadam",
    "fedyogi",
    "fedadagrad",
    "fedmedian",
    "fedtrimmedavg",
    "krum",
    "multikrum",
    "bulyan",
    "qfedavg",
)
