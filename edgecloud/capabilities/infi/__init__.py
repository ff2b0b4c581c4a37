"""InFi input filters as a federation of camera nodes (thesis chapter 3).

``capability = "infi"``; settings in ``[tool.flwr.app.config.infi]``
(:class:`~.config.InfiConfig`), wire keys in :mod:`.keys`, FedAvg of the skip
filter (or the local-only baseline) and the final report in :mod:`.server`, the
camera node's handlers in :mod:`.client`, its data split in :mod:`.node_data`.
The algorithms (feature networks, the Siamese filter, fit_skip, thresholds) are
the library :mod:`edgecloud.infi`.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from edgecloud.capabilities.infi import client, server
from edgecloud.capabilities.infi.config import InfiConfig
from edgecloud.settings import RunSettings, Section


class InfiCapability:
    """The InFi capability (registered as ``infi``)."""

    name = "infi"
    section = InfiConfig
    resumable = False  # a run is a few short rounds; nothing is checkpointed

    def serve(
        self, grid: Grid, context: Context, settings: RunSettings[Section]
    ) -> None:
        """Train the skip filters (federated or local-only), then report them."""
        assert isinstance(settings.section, InfiConfig)
        server.serve(grid, context, settings)  # type: ignore[arg-type]

    def register(self, app: ClientApp) -> None:
        """Register the camera node's train and evaluate handlers."""
        client.register(app)


INFI = InfiCapability()
