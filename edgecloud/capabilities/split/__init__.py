"""Split learning (SplitNN, U-shaped, SplitFed v1/v2) over the sealed channel.

``capability = "split"``; settings in ``[tool.flwr.app.config.split]``
(:class:`~.config.SplitConfig`), wire keys in :mod:`.keys`, the server's workflow in
:mod:`.server`, the device's handler in :mod:`.client`.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from edgecloud.capabilities.split import client
from edgecloud.capabilities.split.config import SplitConfig
from edgecloud.capabilities.split.server import SplitLearning
from edgecloud.settings import RunSettings, Section
from edgecloud.tasks import state_to_numpy
from edgecloud.tasks.split_steps import TaskSplitOps
from edgecloud.workflow.run_setup import make_recorder, set_up_task
from edgecloud.workflow.stream import stream_endpoint


class SplitCapability:
    """The split-learning capability (registered as ``split``)."""

    name = "split"
    section = SplitConfig
    resumable = True

    def serve(
        self, grid: Grid, context: Context, settings: RunSettings[Section]
    ) -> None:
        """Train with the chosen split mode, then serve split inference once."""
        assert isinstance(settings.section, SplitConfig)
        common, config = settings.common, settings.section
        setup = set_up_task(settings)
        ops = TaskSplitOps(
            setup.task, config.lr, common.momentum, setup.test_set, common.batch_size
        )
        initial = state_to_numpy(setup.model)
        label = f"split: {config.mode} on {common.task} ({common.partitioning})"
        with stream_endpoint(config, grid, "split steps") as endpoint:
            SplitLearning(config, common, ops, context.run_id, endpoint).run(
                grid, initial, make_recorder(settings, label)
            )

    def register(self, app: ClientApp) -> None:
        """Register the device's per-step and per-round (streamed) handlers."""
        client.register(app)


SPLIT = SplitCapability()
