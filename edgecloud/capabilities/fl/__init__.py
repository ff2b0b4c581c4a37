"""FL baselines on Flower's strategies, with differential privacy and quantized updates.

``capability = "fl"``; settings in ``[tool.flwr.app.config.fl]``
(:class:`~.config.FlConfig`), wire keys in :mod:`.keys`, the server side in
:mod:`.server`, the client handlers in :mod:`.client`.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from edgecloud.capabilities.fl import client, server
from edgecloud.capabilities.fl.config import FlConfig
from edgecloud.settings import RunSettings, Section


class FlCapability:
    """The FL-baselines capability (registered as ``fl``)."""

    name = "fl"
    section = FlConfig
    resumable = True

    def serve(
        self, grid: Grid, context: Context, settings: RunSettings[Section]
    ) -> None:
        """Train with the configured Flower strategy."""
        assert isinstance(settings.section, FlConfig)
        server.serve(grid, context, settings)  # type: ignore[arg-type]

    def register(self, app: ClientApp) -> None:
        """Register ``train`` (with its mods) and ``evaluate``."""
        client.register(app)


FL = FlCapability()
