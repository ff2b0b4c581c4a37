"""Flower ServerApp glue: validate the run config, serve the chosen capability."""

from __future__ import annotations

from logging import INFO

from flwr.app import Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from edgecloud.capability import CAPABILITIES, load_run_settings

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Validate the run config (before round 1), then run the capability."""
    settings = load_run_settings(context.run_config)
    log(INFO, "edgecloud run config: %s", settings.to_run_config())
    CAPABILITIES[settings.common.capability].serve(grid, context, settings)
