"""Run the app in-process on Flower's simulation engine (tests, benchmarks, scripts).

``flwr run .`` is the user-facing way; this module drives the same ServerApp and
ClientApp through ``flwr.simulation.run_simulation`` (no SuperLink), injecting the
run config that ``run_simulation`` leaves empty (guide section 3.3).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.common.config import get_fused_config_from_dir
from flwr.serverapp import Grid, ServerApp

from edgecloud.types import Scalar

PROJECT_DIR = Path(__file__).resolve().parent.parent


def default_run_config() -> dict[str, Scalar]:
    """``[tool.flwr.app.config]`` of the project's pyproject.toml."""
    return dict(get_fused_config_from_dir(PROJECT_DIR, {}))


def make_run_config(overrides: Mapping[str, Scalar] | None = None) -> dict[str, Scalar]:
    """Defaults with ``overrides`` applied; unknown keys fail, as in ``flwr run``."""
    config = default_run_config()
    unknown = sorted(set(overrides or {}) - set(config))
    if unknown:
        raise KeyError(f"unknown run-config key(s) {unknown}")
    config.update(overrides or {})
    return config


class _ConfiguredClientApp(ClientApp):
    """A ClientApp that presents ``run_config`` to a wrapped ClientApp."""

    def __init__(self, inner: ClientApp, run_config: Mapping[str, Scalar]) -> None:
        super().__init__()
        self._inner = inner
        self._run_config = dict(run_config)

    def __call__(self, message: Message, context: Context) -> Message:
        original = context.run_config
        context.run_config = dict(self._run_config)
        try:
            return self._inner(message, context)
        finally:
            # The simulation engine rejects a context whose run_config changed.
            context.run_config = original


def run_local_simulation(
    overrides: Mapping[str, Scalar] | None = None,
    *,
    num_supernodes: int = 2,
    client_app: ClientApp | None = None,
    num_cpus_per_client: float = 1.0,
    verbose: bool = False,
) -> None:
    """Run the edgecloud ServerApp and ClientApp with ``overrides`` in-process.

    Parameters
    ----------
    overrides : Mapping, optional
        Run-config values replacing the pyproject defaults (kebab-case keys).
    num_supernodes : int
        Number of virtual SuperNodes (partitions).
    client_app : ClientApp, optional
        A replacement ClientApp (tests inject failures this way).
    num_cpus_per_client : float
        Ray CPUs per ClientApp; 1 gives two concurrent clients on two cores.
    verbose : bool
        Let the simulation engine log at DEBUG level.

    Raises
    ------
    Exception
        Whatever the ServerApp raised (e.g. ConfigError for a bad run config).
    """
    errors = run_local_simulations(
        {"run": {}},
        shared=overrides,
        num_supernodes=num_supernodes,
        client_app=client_app,
        num_cpus_per_client=num_cpus_per_client,
        verbose=verbose,
    )
    if errors["run"] is not None:
        raise errors["run"]


def run_local_simulations(
    runs: Mapping[str, Mapping[str, Scalar]],
    *,
    shared: Mapping[str, Scalar] | None = None,
    num_supernodes: int = 2,
    client_app: ClientApp | None = None,
    num_cpus_per_client: float = 1.0,
    verbose: bool = False,
) -> dict[str, Exception | None]:
    """Run several server-side configurations one after another in one simulation.

    Starting the simulation engine (Ray, actors, imports) costs ~15 s; comparing
    strategies on the same clients pays it once. Each entry of ``runs`` overrides
    ``shared`` for the ServerApp only: the ClientApp sees ``shared``, so a run may
    not change a key some client handler reads (``Key.client`` in the sections).
    Every run's config is validated before the engine starts.

    Returns
    -------
    dict
        Run name -> the exception its ServerApp raised, or None if it completed.

    Raises
    ------
    ConfigError
        If a run's config is invalid (nothing has run yet).
    ValueError
        If a run changes a client-side key.
    """
    from flwr.simulation import run_simulation

    from edgecloud.capability import client_view, load_run_settings
    from edgecloud.client_app import app as edgecloud_client_app
    from edgecloud.server_app import main as edgecloud_server_main

    base = make_run_config(shared)
    expected = client_view(base)
    for name, run in runs.items():
        merged = make_run_config({**dict(shared or {}), **run})  # unknown keys fail
        load_run_settings(merged)  # a bad value fails before the engine starts
        seen = client_view(merged)
        clash = sorted(
            k for k in set(seen) | set(expected) if seen.get(k) != expected.get(k)
        )
        if clash:
            raise ValueError(
                f"run {name!r} changes client-side key(s) {clash}; clients see one "
                "run config per simulation: put them in shared= or use separate "
                "simulations"
            )
    errors: dict[str, Exception | None] = {}
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        for name, run in runs.items():
            context.run_config = {**base, **run}
            try:
                edgecloud_server_main(grid, context)
                errors[name] = None
            except Exception as err:
                logging.getLogger("flwr").exception("run %r failed", name)
                errors[name] = err

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    backend_config: dict[str, Any] = {
        "client_resources": {"num_cpus": num_cpus_per_client, "num_gpus": 0.0},
        "init_args": {"logging_level": logging.ERROR, "log_to_driver": verbose},
    }
    run_simulation(
        server_app=server_app,
        client_app=_ConfiguredClientApp(client_app or edgecloud_client_app, base),
        num_supernodes=num_supernodes,
        backend_config=backend_config,
        verbose_logging=verbose,
    )
    missing = [name for name in runs if name not in errors]
    for name in missing:
        errors[name] = RuntimeError(f"run {name!r} never started (simulation aborted)")
    return errors
