"""Real flower-superlink + 2 flower-supernode processes on 127.0.0.1 (insecure, TLS)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgecloud.deploy.certificates import generate_node_key
from edgecloud.deploy.federation import start_local_federation
from edgecloud.deploy.flwr_cli import (
    FINISHED_COMPLETED,
    flwr_env,
    submit_run,
    wait_for_run,
)
from edgecloud.deploy.processes import (
    _alive,
    free_port,
    start_process,
    supernode_command,
)
from edgecloud.local_simulation import PROJECT_DIR
from tests.e2e.helpers import read_outputs

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("tls", "auth"),
    [
        (False, False),  # insecure: a first try on a trusted network
        (True, True),  # TLS + SuperNode authentication: real use
    ],
    ids=["insecure", "tls-auth"],
)
def test_superlink_and_two_supernodes_complete_a_run(
    tmp_path: Path, tls: bool, auth: bool
) -> None:
    # Prepare
    env = flwr_env(tmp_path / "flwr_home")
    federation = start_local_federation(
        tmp_path / "deploy", env, num_supernodes=2, tls=tls, supernode_auth=auth
    )
    pids = [p.pid for p in federation.processes]
    out = tmp_path / "outputs"
    try:
        # Execute
        run_id = submit_run(
            PROJECT_DIR,
            federation.connection,
            env,
            f'num-server-rounds=1 fraction-evaluate=0.0 output-dir="{out}"',
        )
        status = wait_for_run(
            run_id, federation.connection, env, timeout=600, stream_logs=False
        )

        # Assert
        assert status["status"] == FINISHED_COMPLETED, status
        results = read_outputs(out)
        assert results["completed_rounds"] == 1
        assert {p["partition-id"] for p in results["partitions"]} == {0, 1}
        if auth:
            _assert_unregistered_node_is_rejected(tmp_path, federation, env)
    finally:
        stopped = federation.stop()

    # Assert: every process we started is gone, stopped by its PID
    assert set(pids) <= set(stopped)
    assert not any(_alive(pid) for pid in pids)


def _assert_unregistered_node_is_rejected(tmp_path, federation, env) -> None:  # type: ignore[no-untyped-def]
    key = generate_node_key(tmp_path / "rogue", "rogue")
    assert federation.tls is not None
    rogue = start_process(
        "rogue-supernode",
        supernode_command(
            federation.superlink_address,
            free_port(),
            {"partition-id": 0, "num-partitions": 2},
            root_certificates=federation.tls.ca_cert,
            auth_private_key=key.private_key,
        ),
        federation.workdir,
        env,
    )
    deadline = time.monotonic() + 120
    while _alive(rogue.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(rogue.pid), "an unregistered SuperNode was not turned away"
    assert "Failed to activate SuperNode" in rogue.log_path.read_text()
