"""Flower's built-in Message-API strategies, chosen by name, with hyper-parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypedDict, get_args

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
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

from edgecloud.capabilities.fl.config import FlConfig, StrategyName
from edgecloud.capabilities.fl.keys import INITIAL_LOSS, REPORT_INITIAL_LOSS
from edgecloud.workflow.keys import ARRAYS, CONFIG, NUM_EXAMPLES

MetricsAggregator = Callable[[list[RecordDict], str], MetricRecord]


class QFedAvgWithInitialLoss(QFedAvg):
    """q-FedAvg that asks clients for the loss of the received model.

    q-FedAvg (Li et al. 2020) weighs each update by the client's loss *before*
    local training; Flower's QFedAvg reads it from ``train_loss_key``, and this
    subclass asks for it in the train config (the FedProx way: one hook).
    """

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Ask clients to report ``initial-loss``."""
        config[REPORT_INITIAL_LOSS] = True
        return super().configure_train(server_round, arrays, config, grid)


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


def build_baseline(
    config: FlConfig,
    *,
    fraction_train: float,
    min_available_nodes: int,
    train_metrics_aggr_fn: MetricsAggregator | None = None,
) -> Strategy:
    """Instantiate the Flower strategy ``config.strategy`` with its hyper-parameters.

    Parameters
    ----------
    config : FlConfig
        The FL section: strategy name and hyper-parameters (``fedopt-*`` feed
        FedAdam / FedYogi, FedAdagrad takes eta and tau only; ``server-lr`` and
        ``server-momentum`` feed FedAvgM; ``lr`` is FedOpt's ``eta_l`` and
        q-FedAvg's Lipschitz estimate ``L = 1 / lr``).
    fraction_train, min_available_nodes : float, int
        Sampling (common settings).
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
    # min_*_nodes = 1: fraction-train / fl.fraction-evaluate decide the sample size
    # (Flower's default of 2 would silently override a fraction of 0.1 on 10 nodes).
    common: _CommonKwargs = {
        "fraction_train": fraction_train,
        "fraction_evaluate": config.fraction_evaluate,
        "min_train_nodes": 1,
        "min_evaluate_nodes": 1,
        "min_available_nodes": min_available_nodes,
        "weighted_by_key": NUM_EXAMPLES,
        "arrayrecord_key": ARRAYS,
        "configrecord_key": CONFIG,
        "train_metrics_aggr_fn": train_metrics_aggr_fn,
    }
    name = config.strategy
    eta, eta_l, tau = config.fedopt_eta, config.lr, config.fedopt_tau
    beta_1, beta_2 = config.fedopt_beta_1, config.fedopt_beta_2

    def _adaptive(cls: type[FedAdam] | type[FedYogi]) -> Callable[[], Strategy]:
        return lambda: cls(
            **common, eta=eta, eta_l=eta_l, beta_1=beta_1, beta_2=beta_2, tau=tau
        )

    builders: dict[str, Callable[[], Strategy]] = {
        "fedavg": lambda: FedAvg(**common),
        "fedprox": lambda: FedProx(**common, proximal_mu=config.proximal_mu),
        "fedavgm": lambda: FedAvgM(
            **common,
            server_learning_rate=config.server_lr,
            server_momentum=config.server_momentum,
        ),
        "fedadam": _adaptive(FedAdam),
        "fedyogi": _adaptive(FedYogi),
        # no moment decay: Adagrad accumulates squared deltas
        "fedadagrad": lambda: FedAdagrad(**common, eta=eta, eta_l=eta_l, tau=tau),
        "fedmedian": lambda: FedMedian(**common),
        "fedtrimmedavg": lambda: FedTrimmedAvg(**common, beta=config.trimmed_beta),
        "krum": lambda: Krum(**common, num_malicious_nodes=config.num_malicious_nodes),
        "multikrum": lambda: MultiKrum(
            **common,
            num_malicious_nodes=config.num_malicious_nodes,
            num_nodes_to_select=config.num_nodes_to_select,
        ),
        "bulyan": lambda: Bulyan(
            **common, num_malicious_nodes=config.num_malicious_nodes
        ),
        "qfedavg": lambda: QFedAvgWithInitialLoss(
            client_learning_rate=config.lr,
            q=config.qffl_q,
            train_loss_key=INITIAL_LOSS,
            **common,
        ),
    }
    return builders[name]()


BASELINE_NAMES: tuple[str, ...] = get_args(StrategyName)
