"""STIP three-party secure transformer inference (thesis chapter 4, corrected).

``capability = "stip"``; settings in ``[tool.flwr.app.config.stip]``
(:class:`~.config.StipConfig`), wire keys in :mod:`.keys`, the model server's
workflow in :mod:`.server`, the data owner's handler in :mod:`.client`. The
algorithms (permutations, bundles, runtime, attacks) are the library
:mod:`edgecloud.stip`.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from edgecloud.capabilities.stip import client
from edgecloud.capabilities.stip.config import StipConfig
from edgecloud.capabilities.stip.server import SecureInference
from edgecloud.settings import RunSettings, Section
from edgecloud.workflow.nodes import wait_for_nodes
from edgecloud.workflow.run_setup import make_recorder
from edgecloud.workflow.stream import stream_endpoint


class StipCapability:
    """The STIP capability (registered as ``stip``)."""

    name = "stip"
    section = StipConfig
    resumable = False  # a generation's KV caches live in the server's memory

    def serve(
        self, grid: Grid, context: Context, settings: RunSettings[Section]
    ) -> None:
        """Serve the permuted model to every connected data owner."""
        assert isinstance(settings.section, StipConfig)
        common, config = settings.common, settings.section
        bundle = config.server_bundle_path()
        from edgecloud.stip.runtime import StipServer  # transformers: only for STIP

        server = StipServer(bundle)
        nodes = wait_for_nodes(grid, common.min_available_nodes, common.round_timeout)
        rounds = config.max_new_tokens + 1 if server.is_generator else 2
        label = f"stip: {server.family.name} serving {len(nodes)} data owners"
        with stream_endpoint(config, grid, "STIP tokens") as endpoint:
            SecureInference(
                server, rounds, common.round_timeout, endpoint, context.run_id
            ).run(grid, nodes, make_recorder(settings, label))

    def register(self, app: ClientApp) -> None:
        """Register the data owner's step handler."""
        client.register(app)


STIP = StipCapability()
