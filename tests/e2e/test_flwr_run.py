"""The main job through the real CLI: `flwr run .` on the managed local simulation."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecloud.deploy.flwr_cli import (
    FINISHED_COMPLETED,
    flwr,
    submit_run,
    wait_for_run,
)
from edgecloud.deploy.local_superlink import (
    installs_dependencies_per_run,
    local_superlink_pids,
)
from edgecloud.local_simulation import PROJECT_DIR
from tests.e2e.helpers import read_outputs

pytestmark = pytest.mark.slow


def test_default_main_job_reaches_090_and_bad_config_fails(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    # Prepare: what `make run` does, 10 virtual SuperNodes
    flwr(
        [
            "federation",
            "simulation-config",
            "--num-supernodes",
            "10",
            "--client-resources-num-cpus",
            "1",
        ],
        local_env,
        cwd=PROJECT_DIR,
    )
    port = int(local_env["FLWR_LOCAL_SUPERLINK_HTTP_API_PORT"])
    assert [installs_dependencies_per_run(p) for p in local_superlink_pids(port)] == [
        False
    ]
    out = tmp_path / "outputs"

    # Execute: the defaults from pyproject.toml, only the output directory moved
    run_id = submit_run(PROJECT_DIR, "local", local_env, f'output-dir="{out}"')
    status = wait_for_run(run_id, "local", local_env, timeout=600, stream_logs=False)

    # Assert
    assert status["status"] == FINISHED_COMPLETED, status
    results = read_outputs(out)
    assert results["completed_rounds"] == results["config"]["num-server-rounds"] == 10
    assert results["config"]["partitioning"] == "iid"
    assert len(results["partitions"]) == 10
    assert results["rounds"][-1]["central_accuracy"] >= 0.90

    # Execute: an invalid value fails the run before round 1, with a clear reason
    bad = submit_run(
        PROJECT_DIR,
        "local",
        local_env,
        f'partitioning="by-camera" output-dir="{tmp_path / "bad"}"',
    )
    bad_status = wait_for_run(bad, "local", local_env, timeout=300, stream_logs=False)

    # Assert
    assert bad_status["status"] == "finished:failed"
    assert "'partitioning' has value 'by-camera'" in bad_status["status-details"]
    assert not (tmp_path / "bad").exists()
