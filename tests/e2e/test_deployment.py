"""A real TLS + SuperNode-auth deployment on 127.0.0.1, shared by several runs.

One flower-superlink and two flower-supernode processes serve a FedAvg round,
SplitFed-v1 over streamed sessions (through a capturing TCP proxy), a STIP
generation over the stream, a round in which one device's ClientApp is killed
mid-session; an unregistered SuperNode is turned away; every process is stopped by
its PID at the end. (The insecure deployment runs the testbed task with per-node
cameras in test_testbed_federation.py.)
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from edgecloud.channel import Handshake
from edgecloud.data.partitioning import PartitionSpec
from edgecloud.deploy.certificates import (
    generate_node_key,
    generate_tls,
    tls_material,
)
from edgecloud.deploy.federation import LocalFederation
from edgecloud.deploy.flwr_cli import FINISHED_COMPLETED
from edgecloud.deploy.processes import (
    _alive,
    free_port,
    start_process,
    supernode_command,
)
from edgecloud.local_simulation import make_run_config
from edgecloud.stip.developer import make_instances
from edgecloud.tasks import get_task
from edgecloud.tasks.split_steps import batch_schedule
from edgecloud.transport import (
    EndpointUnreachable,
    SessionClient,
    SessionRefused,
    Ticket,
)
from edgecloud.workflow.seeds import client_round_seed
from tests.e2e.helpers import (
    CapturingProxy,
    descendants,
    federation_env,
    has_connection_to,
    local_federation,
    read_outputs,
    run_on,
)
from tests.stip_models import plaintext_text, save_with_tokenizer

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


def _first_activations(partition: int) -> bytes:
    """The plaintext smashed data a client computes first (recomputed here)."""
    config = make_run_config(STREAMED)
    task = get_task(config["task"])
    torch.manual_seed(config["seed"])
    model = task.build_model()
    data = task.load_client_data(
        "digits", PartitionSpec("iid", 2, config["seed"]), partition, Path("."), False
    ).train
    rows = batch_schedule(
        len(data),
        config["batch-size"],
        config["local-epochs"],
        client_round_seed(config["seed"], 1, partition),
    )[0]
    with torch.no_grad():
        return (
            model.front(task.preprocess(torch.from_numpy(data.features[rows])))
            .numpy()
            .tobytes()
        )


STREAMED = {
    "capability": "split",
    "split.mode": "splitfed-v1",
    "num-server-rounds": 2,
    "local-epochs": 1,
    "batch-size": 64,
}


def _probe_while_streaming(
    proxy: CapturingProxy, port: int, ca_pem: bytes, outcomes: list[str]
) -> None:
    """Once sessions run, try a forged ticket and a stranger's CA on the endpoint."""
    deadline = time.monotonic() + 300
    while proxy.connections == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    forged = Ticket(
        endpoint=f"127.0.0.1:{port}",
        session_id=secrets.token_hex(16),
        token=secrets.token_bytes(32),
        expires_at=time.time() + 60,
        server_public=Handshake().public_bytes,
        ca_pem=ca_pem,
    )
    stranger_ca = tls_material(("127.0.0.1",)).ca_pem
    for name, ca in (("forged", None), ("wrong-ca", stranger_ca)):
        client = SessionClient(
            forged, run_id=1, node_id=1, ca_pem=ca, connect_timeout=10.0
        )
        try:
            client.connect()
            outcomes.append(f"{name}: connected")
        except SessionRefused:
            outcomes.append(f"{name}: refused")
        except EndpointUnreachable:
            outcomes.append(f"{name}: unreachable")
        finally:
            client.close()


def test_splitfed_v1_runs_over_the_stream_and_the_wire_shows_no_activations(
    tls_federation: LocalFederation, tmp_path: Path
) -> None:
    # Prepare: the endpoint on 127.0.0.1:PORT with certificates from the deploy
    # tooling, advertised as 127.0.0.2, where a proxy relays (and keeps) every
    # byte between the SuperNodes and the endpoint; a prober tries a forged
    # ticket and a stranger's CA while the sessions run
    port = free_port()
    tls = generate_tls(tmp_path / "stream-tls", hosts=("127.0.0.1", "127.0.0.2"))
    proxy = CapturingProxy(("127.0.0.2", port), ("127.0.0.1", port))
    outcomes: list[str] = []
    prober = threading.Thread(
        target=_probe_while_streaming,
        args=(proxy, port, tls.ca_cert.read_bytes(), outcomes),
        daemon=True,
    )
    prober.start()
    out = tmp_path / "outputs"
    overrides = " ".join(
        f"{key}={json.dumps(value)}" for key, value in STREAMED.items()
    )

    # Execute: transport "auto" streams in a deployment
    try:
        status = run_on(
            tls_federation,
            f'{overrides} split.stream-bind="127.0.0.1:{port}" '
            f'split.stream-advertise="127.0.0.2" '
            f'split.stream-tls-dir="{tls.ca_cert.parent}" output-dir="{out}"',
        )
    finally:
        proxy.close()
    prober.join(30)

    # Assert: the intruders were refused and the run did not notice them: two
    # rounds, both nodes each round, every step over the stream
    assert outcomes == ["forged: refused", "wrong-ca: unreachable"]
    assert status["status"] == FINISHED_COMPLETED, status
    results = read_outputs(out)
    assert results["completed_rounds"] == 2
    for record in results["rounds"][1:]:
        assert record["train_replies"] == 2 and record["failures"] == 0
        assert record["extra"]["exchanges"] > 5  # one per step, no message each
        assert record["extra"]["session-seconds"] > 0
    assert results["rounds"][-1]["extra"]["split-inference-examples"] > 0
    # what crossed the wire: sessions through the proxy, no plaintext activations
    assert proxy.connections >= 4  # 2 nodes x (2 rounds + inference)
    captured = bytes(proxy.captured)
    plaintext = [_first_activations(p) for p in (0, 1)]
    windows = [a[i : i + 64] for a in plaintext for i in range(0, len(a) - 64, 997)]
    assert len(captured) > 100_000 and windows
    assert not any(w in captured for w in windows)


def test_stip_generates_over_the_stream_like_plaintext(
    tls_federation: LocalFederation, tmp_path: Path
) -> None:
    # Prepare: bundles from the developer tool; the data owners' outputs
    save_with_tokenizer("gpt2", tmp_path / "model")
    (instance,) = make_instances(tmp_path / "model", tmp_path / "bundles", seed=8)
    owners = tmp_path / "owners"
    prompt = "w5 w35 w8"

    # Execute
    status = run_on(
        tls_federation,
        f'capability="stip" stip.server-bundle="{instance.server}" '
        f'stip.user-bundle="{instance.user}" stip.prompt="{prompt}" '
        f'stip.max-new-tokens=32 stip.output-dir="{owners}" '
        f'output-dir="{tmp_path / "server"}"',
    )

    # Assert: 32 tokens each, equal to plaintext generate; one exchange per token
    assert status["status"] == FINISHED_COMPLETED, status
    expected = plaintext_text("gpt2", prompt, 32)
    texts = [json.loads(p.read_text())["text"] for p in sorted(owners.glob("*.json"))]
    assert texts == [expected, expected]
    results = read_outputs(tmp_path / "server", checkpoints=False)
    assert results["summary"]["generated-tokens"] == 64
    assert results["summary"]["rounds"] == 33
    assert results["summary"]["dropped-nodes"] == []


def test_a_client_killed_mid_session_is_dropped_and_the_round_completes(
    tls_federation: LocalFederation, tmp_path: Path
) -> None:
    # Prepare: a long session (small batches); once node 1's ClientApp holds its
    # stream connection, kill that process (the device dies mid-round)
    port = free_port()
    out = tmp_path / "outputs"
    node_1 = next(p for p in tls_federation.processes if p.name == "supernode1")
    killed: list[int] = []

    def kill_when_streaming() -> None:
        deadline = time.monotonic() + 300
        while not killed and time.monotonic() < deadline:
            for pid in descendants(node_1.pid):
                if has_connection_to(pid, port):
                    time.sleep(3.0)  # set up, then steps (~10 ms each)
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_streaming, daemon=True)
    killer.start()

    # Execute
    status = run_on(
        tls_federation,
        'capability="split" split.mode="splitfed-v1" num-server-rounds=1 '
        f'local-epochs=4 batch-size=8 split.stream-bind="127.0.0.1:{port}" '
        # node 1's SuperNode learns of its dead ClientApp from Flower's task
        # heartbeat (up to ~60 s); the closing inference round need not wait
        f'split.stream-connect-timeout=20 output-dir="{out}"',
    )
    killer.join(5)

    # Assert: the other node's round counted, the killed one dropped
    assert killed, "node 1's ClientApp never held a stream connection"
    assert status["status"] == FINISHED_COMPLETED, status
    record = read_outputs(out)["rounds"][-1]
    assert record["train_replies"] == 1 and record["failures"] == 1
    assert record["extra"]["exchanges"] > 2


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
