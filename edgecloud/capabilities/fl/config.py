"""``[tool.flwr.app.config.fl]``: Flower strategies, DP, quantization."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from edgecloud.exceptions import ConfigError
from edgecloud.settings import (
    CLIENT,
    CommonSettings,
    Fraction,
    NonNegative,
    NonNegativeInt,
    Positive,
    RunConfigValues,
    Section,
    UnitOpen,
)
from edgecloud.types import Scalar

StrategyName = Literal[
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
]
DpMode = Literal[
    "none",
    "server-fixed",
    "server-adaptive",
    "client-fixed",
    "client-adaptive",
    "local",
]
# Modes whose clipping happens on the client (a mod must run there).
CLIENT_SIDE_DP_MODES = ("client-fixed", "client-adaptive", "local")
# Read by the ClientApp only when dp-mode is "local" (LocalDpMod's parameters).
LOCAL_DP_KEYS = ("dp-clipping-norm", "dp-epsilon", "dp-delta", "dp-sensitivity")


class FlConfig(Section):
    """FL baselines on Flower's Message-API strategies (``capability = "fl"``).

    ``strategy`` picks one of the twelve; ``lr`` is the clients' local SGD learning
    rate (also q-FedAvg's Lipschitz estimate ``1/lr`` and FedOpt's ``eta_l``);
    ``dp-*`` choose one of Flower's DP wrappers / mods; ``update-quantization-bits``
    asks clients for integer update deltas.
    """

    section: ClassVar[str] = "fl"
    mode_field: ClassVar[str | None] = "strategy"

    strategy: StrategyName
    lr: Annotated[Positive, CLIENT]
    fraction_evaluate: Fraction
    # --- strategy hyper-parameters -------------------------------------------------
    proximal_mu: NonNegative
    server_lr: Positive
    server_momentum: UnitOpen
    fedopt_eta: Positive
    fedopt_beta_1: UnitOpen
    fedopt_beta_2: UnitOpen
    fedopt_tau: Positive
    trimmed_beta: Annotated[float, Field(ge=0, lt=0.5)]
    num_malicious_nodes: NonNegativeInt
    num_nodes_to_select: NonNegativeInt
    qffl_q: NonNegative
    # --- differential privacy (client keys: see client_view) -------------------------
    dp_mode: DpMode
    dp_noise_multiplier: NonNegative
    dp_clipping_norm: Positive
    dp_num_sampled_clients: NonNegativeInt
    dp_target_clipped_quantile: Fraction
    dp_clip_norm_lr: Positive
    dp_epsilon: Positive
    dp_delta: Annotated[float, Field(gt=0, lt=1)]
    dp_sensitivity: Positive
    # --- update compression ---------------------------------------------------------
    update_quantization_bits: Literal[0, 8, 16]

    def check(self, common: CommonSettings) -> None:
        """MultiKrum selects someone; DP and quantization do not combine."""
        if self.strategy == "multikrum" and self.num_nodes_to_select < 1:
            raise ConfigError(
                f"run-config key 'fl.num-nodes-to-select' has value "
                f"{self.num_nodes_to_select!r}; expected an integer >= 1 for multikrum"
            )
        if self.dp_mode != "none" and self.update_quantization_bits:
            # Quantizing after clipping changes the update's norm, so the clipping
            # bound (and with it the DP guarantee) would no longer hold.
            raise ConfigError(
                f"run-config keys 'fl.dp-mode'={self.dp_mode!r} and "
                f"'fl.update-quantization-bits'={self.update_quantization_bits} "
                "cannot be combined; expected fl.update-quantization-bits=0 when DP "
                "is on"
            )

    @classmethod
    def client_view(cls, run_config: RunConfigValues) -> dict[str, Scalar]:
        """``lr`` plus the DP mode as a client acts on it.

        Server-side DP needs nothing from the clients, so those modes look like
        ``none`` to them; local DP's parameters matter only in ``local`` mode.
        """
        view = super().client_view(run_config)
        mode = run_config.get(cls.key_of("dp_mode"), "none")
        view[cls.key_of("dp_mode")] = mode if mode in CLIENT_SIDE_DP_MODES else "none"
        if mode == "local":
            for key in LOCAL_DP_KEYS:
                full = f"{cls.section}.{key}"
                if full in run_config:
                    view[full] = run_config[full]
        return view

    def dp_sampled_clients(self, fraction_train: float, connected: int) -> int:
        """``dp-num-sampled-clients``, or (if 0) the count Flower's sampling yields."""
        if self.dp_num_sampled_clients:
            return self.dp_num_sampled_clients
        return max(int(connected * fraction_train), 1)
