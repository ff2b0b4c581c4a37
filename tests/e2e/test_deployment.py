"""A real TLS + SuperNode-auth deployment on 127.0.0.1, shared by several runs.

One flower-superlink and two flower-supernode processes serve a FedAvg round and a
SplitFed-v1 round; an unregistered SuperNode is turned away; every process is
stopped by its PID at the end. (The insecure deployment runs the testbed task with
per-node cameras in test_testbed_federation.py.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgecloud.deploy.certificates import generate_node_key
from edgecloud.deploy.federation import LocalFederation
from edgecloud.deploy.flwr_cli import FINISHED_COMPLETED
from edgecloud.deploy.processes import (
    _alive,
    free_port,
    start_process,
    supernode_command,
)
from tests.e2e.helpers import federation_env, local_federation, read_outputs, run_on

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tls_federation(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalFederation]:
    root = tmp_path_factory.mktemp("tls-auth")
    with local_federation(
        root, num_supernodes=2, tls=True, supernode_auth=True
    ) as federation:
        yield federation


def test_fedavg_round_on_a_tls_superlink_with_node_auth(
    tls_federation: LocalFederation, tmp_path: Path
) -> None:
    # Execute
    out = tmp_path / "outputs"
    status = run_on(
        tls_federation,
        f'num-server-rounds=1 fl.fraction-evaluate=0.0 output-dir="{out}"',
    )

    # Assert
    assert status["status"] == FINISHED_COMPLETED, status
    results = read_outputs(out)
    assert results["completed_rounds"] == 1
    assert {p["partition-id"] for p in results["partitions"]} == {0, 1}


def test_splitfed_v1_round_on_a_tls_superlink_with_two_supernodes(
    tls_federation: LocalFederation, tmp_path: Path
) -> None:
    # Execute: one optimizer step per client (a batch larger than a partition):
    # every exchange costs a deployed message round trip (~6 s)
    out = tmp_path / "outputs"
    status = run_on(
        tls_federation,
        'capability="split" split.mode="splitfed-v1" num-server-rounds=1 '
        f'local-epochs=1 batch-size=1024 output-dir="{out}"',
        timeout=900,
    )

    # Assert
    assert status["status"] == FINISHED_COMPLETED, status
    results = read_outputs(out)
    assert results["completed_rounds"] == 1
    assert results["rounds"][-1]["train_replies"] == 2
    assert np.isfinite(results["rounds"][-1]["central_loss"])
    assert results["rounds"][-1]["extra"]["split-inference-examples"] > 0


def test_an_unregistered_supernode_is_turned_away(
    tls_federation: LocalFederation, tmp_path: Path
) -> None:
    # Prepare: a key the SuperLink never registered
    key = generate_node_key(tmp_path / "rogue", "rogue")
    assert tls_federation.tls is not None

    # Execute
    rogue = start_process(
        "rogue-supernode",
        supernode_command(
            tls_federation.superlink_address,
            free_port(),
            {"partition-id": 0, "num-partitions": 2},
            root_certificates=tls_federation.tls.ca_cert,
            auth_private_key=key.private_key,
        ),
        tls_federation.workdir,
        federation_env(tls_federation),
    )
    deadline = time.monotonic() + 120
    while _alive(rogue.pid) and time.monotonic() < deadline:
        time.sleep(0.5)

    # Assert
    assert not _alive(rogue.pid), "an unregistered SuperNode was not turned away"
    assert "Failed to activate SuperNode" in rogue.log_path.read_text()
