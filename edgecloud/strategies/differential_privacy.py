"""Central and local differential privacy through Flower's own wrappers and mods."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flwr.app import Context, Message, MessageType
from flwr.clientapp.mod import LocalDpMod, adaptiveclipping_mod, fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)

# Modes whose clipping happens on the client (a mod must run there).
CLIENT_SIDE_MODES = ("client-fixed", "client-adaptive", "local")


@dataclass(frozen=True)
class DpParams:
    """Differential-privacy settings from the run config (``dp-*`` keys).

    ``mode`` is ``none``; ``server-fixed`` / ``server-adaptive`` (the server clips
    each update, then noises the aggregate); ``client-fixed`` / ``client-adaptive``
    (clients clip through Flower's clipping mods, the server noises); or ``local``
    (each client clips and noises its own update with Flower's ``LocalDpMod``).
    ``clipping_norm`` is the initial norm for adaptive modes.
    """

    mode: str
    noise_multiplier: float
    clipping_norm: float
    target_clipped_quantile: float = 0.5
    clip_norm_lr: float = 0.2
    epsilon: float = 10.0
    delta: float = 1e-5
    sensitivity: float = 1.0


def wrap_with_dp(
    strategy: Strategy, params: DpParams, num_sampled_clients: int
) -> Strategy:
    """Wrap ``strategy`` in the Flower central-DP wrapper for ``params.mode``.

    ``none`` and ``local`` return ``strategy`` unchanged (local DP lives entirely in
    the client mod). Note Flower's central-DP wrappers skip aggregation for a
    round in which any sampled client failed: DP trades fault tolerance away.
    """
    if params.mode in ("none", "local"):
        return strategy
    if num_sampled_clients < 1:
        raise ValueError(
            f"num_sampled_clients is {num_sampled_clients}; expected >= 1 for DP"
        )
    if params.mode == "server-fixed":
        return DifferentialPrivacyServerSideFixedClipping(
            strategy, params.noise_multiplier, params.clipping_norm, num_sampled_clients
        )
    if params.mode == "client-fixed":
        return DifferentialPrivacyClientSideFixedClipping(
            strategy, params.noise_multiplier, params.clipping_norm, num_sampled_clients
        )
    adaptive = {
        "server-adaptive": DifferentialPrivacyServerSideAdaptiveClipping,
        "client-adaptive": DifferentialPrivacyClientSideAdaptiveClipping,
    }
    if params.mode not in adaptive:
        raise ValueError(
            f"dp-mode {params.mode!r} unknown; expected none, server-fixed, "
            "server-adaptive, client-fixed, client-adaptive or local"
        )
    return adaptive[params.mode](
        strategy,
        noise_multiplier=params.noise_multiplier,
        num_sampled_clients=num_sampled_clients,
        initial_clipping_norm=params.clipping_norm,
        target_clipped_quantile=params.target_clipped_quantile,
        clip_norm_lr=params.clip_norm_lr,
    )


def make_dp_client_mod(params_of: Callable[[Context], DpParams]) -> Mod:
    """Client mod applying the client half of the run's DP mode to ``train`` replies.

    Mods are fixed when the ClientApp is built, but the DP mode is a run-config
    value, so this one mod reads ``params_of(context)`` per message and delegates
    to Flower's ``fixedclipping_mod``, ``adaptiveclipping_mod`` or ``LocalDpMod``.
    """

    def dp_client_mod(
        msg: Message, ctxt: Context, call_next: ClientAppCallable
    ) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, ctxt)
        params = params_of(ctxt)
        if params.mode == "client-fixed":
            return fixedclipping_mod(msg, ctxt, call_next)
        if params.mode == "client-adaptive":
            return adaptiveclipping_mod(msg, ctxt, call_next)
        if params.mode == "local":
            local = LocalDpMod(
                params.clipping_norm, params.sensitivity, params.epsilon, params.delta
            )
            return local(msg, ctxt, call_next)
        return call_next(msg, ctxt)

    return dp_client_mod
