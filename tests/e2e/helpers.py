"""Helpers for end-to-end tests: read a run's outputs, run on a local federation."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgecloud.deploy.federation import LocalFederation, start_local_federation
from edgecloud.deploy.flwr_cli import flwr_env, submit_run, wait_for_run
from edgecloud.deploy.processes import _alive
from edgecloud.local_simulation import PROJECT_DIR


def read_outputs(output_dir: Path, checkpoints: bool = True) -> dict[str, Any]:
    """Parse results.json and metrics.csv and check the PNG (and checkpoints) exist."""
    results = json.loads((output_dir / "results.json").read_text())
    with (output_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(results["rounds"])
    assert (output_dir / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    if checkpoints:
        saved = sorted((output_dir / "checkpoints").glob("round-*.pt"))
        assert len(saved) == results["completed_rounds"]  # one per round
    return dict(results)


@contextmanager
def local_federation(workdir: Path, **federation: Any) -> Iterator[LocalFederation]:
    """A SuperLink + SuperNodes on 127.0.0.1 for several runs; stopped by PID.

    ``federation`` goes to :func:`start_local_federation` (``num_supernodes``,
    ``tls``, ``supernode_auth``, ``per_node_config``). On exit every started
    process is stopped by its PID, and none may be left alive.
    """
    env = flwr_env(workdir / "flwr_home")
    started = start_local_federation(workdir / "deploy", env, **federation)
    pids = [p.pid for p in started.processes]
    try:
        yield started
    finally:
        stopped = started.stop()
        assert set(pids) <= set(stopped), (pids, stopped)
        assert not any(_alive(pid) for pid in pids)


def federation_env(federation: LocalFederation) -> dict[str, str]:
    """The flwr environment (FLWR_HOME with the connection) of a local federation."""
    return flwr_env(federation.workdir.parent / "flwr_home")


def run_on(
    federation: LocalFederation, run_config: str, timeout: float = 600
) -> dict[str, Any]:
    """Submit the app to ``federation`` once and wait; returns the run's status."""
    env = federation_env(federation)
    run_id = submit_run(PROJECT_DIR, federation.connection, env, run_config)
    return wait_for_run(
        run_id, federation.connection, env, timeout=timeout, stream_logs=False
    )
