"""Central and local differential privacy through Flower's own wrappers and mods."""

from __future__ import annotations

from collections.abc import Callable

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

from edgecloud.capabilities.fl.config import FlConfig


def wrap_with_dp(
    strategy: Strategy, config: FlConfig, num_sampled_clients: int
) -> Strategy:
    """Wrap ``strategy`` in the Flower central-DP wrapper for ``config.dp_mode``.

    ``none`` and ``local`` return ``strategy`` unchanged (local DP lives entirely in
    the client mod). ``server-fixed`` / ``server-adaptive``: the server clips each
    update, then noises the aggregate; ``client-fixed`` / ``client-adaptive``:
    clients clip through Flower's clipping mods, the server noises
    (``dp-clipping-norm`` is the initial norm of the adaptive modes). Note Flower's
    central-DP wrappers skip aggregation for a round in which any sampled client
    failed: DP trades fault tolerance away.
    """
    mode = config.dp_mode
    if mode in ("none", "local"):
        return strategy
    if num_sampled_clients < 1:
        raise ValueError(
            f"num_sampled_clients is {num_sampled_clients}; expected >= 1 for DP"
        )
    fixed = {
        "server-fixed": DifferentialPrivacyServerSideFixedClipping,
        "client-fixed": DifferentialPrivacyClientSideFixedClipping,
    }
    if mode in fixed:
        return fixed[mode](
            strategy,
            config.dp_noise_multiplier,
            config.dp_clipping_norm,
            num_sampled_clients,
        )
    adaptive = {
        "server-adaptive": DifferentialPrivacyServerSideAdaptiveClipping,
        "client-adaptive": DifferentialPrivacyClientSideAdaptiveClipping,
    }
    return adaptive[mode](
        strategy,
        noise_multiplier=config.dp_noise_multiplier,
        num_sampled_clients=num_sampled_clients,
        initial_clipping_norm=config.dp_clipping_norm,
        target_clipped_quantile=config.dp_target_clipped_quantile,
        clip_norm_lr=config.dp_clip_norm_lr,
    )


def make_dp_client_mod(config_of: Callable[[Context], FlConfig]) -> Mod:
    """Client mod applying the client half of the run's DP mode to ``train`` replies.

    Mods are fixed when the ClientApp is built, but the DP mode is a run-config
    value, so this one mod reads ``config_of(context)`` per message and delegates
    to Flower's ``fixedclipping_mod``, ``adaptiveclipping_mod`` or ``LocalDpMod``.
    """

    def dp_client_mod(
        msg: Message, ctxt: Context, call_next: ClientAppCallable
    ) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, ctxt)
        config = config_of(ctxt)
        if config.dp_mode == "client-fixed":
            return fixedclipping_mod(msg, ctxt, call_next)
        if config.dp_mode == "client-adaptive":
            return adaptiveclipping_mod(msg, ctxt, call_next)
        if config.dp_mode == "local":
            local = LocalDpMod(
                config.dp_clipping_norm,
                config.dp_sensitivity,
                config.dp_epsilon,
                config.dp_delta,
            )
            return local(msg, ctxt, call_next)
        return call_next(msg, ctxt)

    return dp_client_mod
