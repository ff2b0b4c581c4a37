"""The Capability protocol and the registry: capability name -> capability.

A capability (FL baselines, split learning, STIP, ...) is one package under
``edgecloud/capabilities/``: its config section, wire keys, server workflow and
client handlers. The ServerApp serves the one named by the run config's
``capability``; the ClientApp registers the handlers of all of them. Adding a
capability touches its own package and one line of :data:`CAPABILITIES`.
"""

from __future__ import annotations

from typing import Protocol

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from edgecloud.capabilities.fl import FL
from edgecloud.capabilities.infi import INFI
from edgecloud.capabilities.packetgame import PACKETGAME
from edgecloud.capabilities.split import SPLIT
from edgecloud.capabilities.stip import STIP
from edgecloud.exceptions import ConfigError
from edgecloud.settings import (
    CommonSettings,
    RunConfigValues,
    RunSettings,
    Section,
    load_settings,
)
from edgecloud.types import Scalar


class Capability(Protocol):
    """What the glue needs from a capability package."""

    @property
    def name(self) -> str:
        """Its ``capability`` value and the name of its config section."""

    @property
    def section(self) -> type[Section]:
        """Its config section (``[tool.flwr.app.config.<name>]``)."""

    @property
    def resumable(self) -> bool:
        """Whether a run can continue after its latest checkpoint."""

    def serve(
        self, grid: Grid, context: Context, settings: RunSettings[Section]
    ) -> None:
        """The ServerApp's work for a run (settings validated, rounds not started)."""

    def register(self, app: ClientApp) -> None:
        """Register its message handlers (and their mods) on the ClientApp."""


CAPABILITIES: dict[str, Capability] = {
    c.name: c for c in (FL, SPLIT, STIP, PACKETGAME, INFI)
}


def sections() -> dict[str, type[Section]]:
    """Capability name -> config section class."""
    return {name: c.section for name, c in CAPABILITIES.items()}


def load_run_settings(run_config: RunConfigValues) -> RunSettings[Section]:
    """The ServerApp's settings: common keys plus the chosen capability's section.

    Raises
    ------
    ConfigError
        For any bad key or value, before round 1.
    """
    settings = load_settings(run_config, sections())
    capability = CAPABILITIES[settings.common.capability]
    if settings.common.resume and not capability.resumable:
        raise ConfigError(
            f"run-config key 'resume' has value true but capability "
            f"{capability.name!r} keeps no checkpoints to resume from; expected false"
        )
    return settings


def client_view(run_config: RunConfigValues) -> dict[str, Scalar]:
    """Values of every key some ClientApp handler acts on (see ``Key.client``).

    Runs that share one simulation share one ClientApp run config: they must have
    the same client view, or a client would train with another run's values.
    """
    view = CommonSettings.client_view(run_config)
    for capability in CAPABILITIES.values():
        view.update(capability.section.client_view(run_config))
    return view
