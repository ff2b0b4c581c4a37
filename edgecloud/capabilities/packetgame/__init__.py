"""PacketGame packet gating as a federation of edge servers (thesis chapter 2).

``capability = "packetgame"``; settings in ``[tool.flwr.app.config.packetgame]``
(:class:`~.config.PacketGameConfig`), wire keys in :mod:`.keys`, FedAvg of the
contextual predictor and the analytics round in :mod:`.server`, the edge server's
handlers in :mod:`.client`. The algorithms (gate, optimizer, gated decoding, the
online loop) are the library :mod:`edgecloud.packetgame`.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from edgecloud.capabilities.packetgame import client, server
from edgecloud.capabilities.packetgame.config import PacketGameConfig
from edgecloud.settings import RunSettings, Section


class PacketGameCapability:
    """The PacketGame capability (registered as ``packetgame``)."""

    name = "packetgame"
    section = PacketGameConfig
    resumable = False  # a run is a few short rounds; nothing is checkpointed

    def serve(
        self, grid: Grid, context: Context, settings: RunSettings[Section]
    ) -> None:
        """Train the predictor federatedly and/or run the live analytics round."""
        assert isinstance(settings.section, PacketGameConfig)
        server.serve(grid, context, settings)  # type: ignore[arg-type]

    def register(self, app: ClientApp) -> None:
        """Register the edge server's train and analytics handlers."""
        client.register(app)


PACKETGAME = PacketGameCapability()
