"""Helpers for end-to-end tests: read a run's outputs, run on a local federation."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from edgecloud.deploy.federation import start_local_federation
from edgecloud.deploy.flwr_cli import flwr_env, submit_run, wait_for_run
from edgecloud.local_simulation import PROJECT_DIR


def read_outputs(output_dir: Path) -> dict[str, Any]:
    """Parse results.json and metrics.csv and check the PNG and checkpoints exist."""
    results = json.loads((output_dir / "results.json").read_text())
    with (output_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(results["rounds"])
    assert (output_dir / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    checkpoints = sorted((output_dir / "checkpoints").glob("round-*.pt"))
    assert len(checkpoints) == results["completed_rounds"]  # one per round
    return dict(results)


def run_on_local_federation(
    tmp_path: Path,
    run_config: str,
    *,
    timeout: float = 600,
    **federation: Any,
) -> dict[str, Any]:
    """Start a SuperLink + SuperNodes on 127.0.0.1, run the app once, stop them.

    ``federation`` goes to :func:`start_local_federation` (``num_supernodes``,
    ``tls``, ``supernode_auth``, ``per_node_config``); returns the run's status.
    """
    env = flwr_env(tmp_path / "flwr_home")
    started = start_local_federation(tmp_path / "deploy", env, **federation)
    try:
        run_id = submit_run(PROJECT_DIR, started.connection, env, run_config)
        return wait_for_run(
            run_id, started.connection, env, timeout=timeout, stream_logs=False
        )
    finally:
        started.stop()
