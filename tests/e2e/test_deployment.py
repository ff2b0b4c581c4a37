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
from typing import Any

import pytest

from edgecloud.channel import Handshake
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
from edgecloud.local_simulation import PROJECT_DIR, make_run_config
from edgecloud.stip.developer import make_instances
from edgecloud.transport import (
    EndpointUnreachable,
    SessionClient,
    SessionRefused,
    Ticket,
)
from tests.e2e.helpers import (
    CapturingProxy,
    descendants,
    federation_env,
    first_activations,
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


STREAMED = {
    "capability": "split",
    "split.mode": "splitfed-v1",
    "num-server-rounds": 2,
    "local-epochs": 1,
    "batch-size": 64,
}


SPY_CLIENTAPP = """
import json
import time
from pathlib import Path

from flwr.clientapp import ClientApp

from edgecloud.capability import CAPABILITIES

SPY_DIR = Path({spy_dir!r})
LATE = {late!r}  # (partition, session number) whose handler waits out its ticket


def leak_ticket(msg, context, call_next):
    # The intruder's view of a ticket: what a compromised SuperNode would leak.
    record = msg.content.config_records.get("session")
    if record is not None:
        partition = int(context.node_config["partition-id"])
        number = len(list(SPY_DIR.glob(f"{{partition}}-*.json")))
        ticket = {{key: record[key] for key in record.keys()}}
        hexed = [key for key, value in ticket.items() if isinstance(value, bytes)]
        ticket |= {{key: ticket[key].hex() for key in hexed}}
        leak = {{
            "run": msg.metadata.run_id,
            "node": context.node_id,
            "ticket": ticket,
            "hexed": hexed,
        }}
        (SPY_DIR / f"{{partition}}-{{number}}.json").write_text(json.dumps(leak))
        if (partition, number) == LATE:  # the intruder tries it once expired
            time.sleep(max(0.0, float(ticket["session-expires-at"]) - time.time()) + 4)
    return call_next(msg, context)


app = ClientApp(mods=[leak_ticket])
for capability in CAPABILITIES.values():
    capability.register(app)
"""


def _spy_app(root: Path, late: tuple[int, int]) -> tuple[Path, Path]:
    """This app with a ClientApp that leaks every ticket into a folder (the spy).

    The partition ``late[0]``'s handler of its session message number ``late[1]``
    starts only after that ticket expired.
    """
    app, spy = root / "spy-app", root / "leaked"
    app.mkdir()
    spy.mkdir()
    pyproject = (PROJECT_DIR / "pyproject.toml").read_text()
    (app / "pyproject.toml").write_text(
        pyproject.replace(
            'clientapp = "edgecloud.client_app:app"',
            'clientapp = "spy_clientapp:app"',
        )
    )
    (app / "spy_clientapp.py").write_text(
        SPY_CLIENTAPP.format(spy_dir=str(spy), late=late)
    )
    return app, spy


def _leaked(spy: Path, partition: int, number: int, timeout: float) -> dict[str, Any]:
    path = spy / f"{partition}-{number}.json"
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # written whole
    return dict(json.loads(path.read_text()))


def _try(name: str, client: SessionClient, outcomes: list[str]) -> None:
    try:
        client.connect()
        outcomes.append(f"{name}: connected")
    except SessionRefused as err:
        outcomes.append(f"{name}: refused ({err})")
    except EndpointUnreachable:
        outcomes.append(f"{name}: unreachable")
    finally:
        client.close()


def _leaked_client(leak: dict[str, Any]) -> SessionClient:
    ticket = dict(leak["ticket"])
    ticket |= {key: bytes.fromhex(ticket[key]) for key in leak["hexed"]}
    # the intruder claims a later expiry: the server goes by its own record
    ticket["session-expires-at"] = time.time() + 60
    return SessionClient(
        Ticket.from_config(ticket),
        run_id=int(leak["run"]),
        node_id=int(leak["node"]),
        connect_timeout=10.0,
    )


def _probe_while_streaming(
    proxy: CapturingProxy,
    spy: Path,
    port: int,
    ca_pem: bytes,
    outcomes: list[str],
) -> None:
    """While the rounds run, intruders try the endpoint with every kind of ticket.

    Round 1, once both nodes stream: a second connection with partition 0's
    leaked (used) ticket, a forged ticket, a stranger's CA. Round 2: partition 1's
    leaked ticket once it expired unused (its handler is held back), and a replay
    of partition 0's round-1 ticket.
    """
    first = _leaked(spy, 0, 0, 300)
    deadline = time.monotonic() + 120
    while len(proxy.captured) < 200_000 and time.monotonic() < deadline:
        time.sleep(0.05)  # both sessions accepted and stepping
    _try("second connection", _leaked_client(first), outcomes)
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
        _try(name, client, outcomes)
    late = _leaked(spy, 1, 1, 300)
    expires = float(late["ticket"]["session-expires-at"])
    time.sleep(max(0.0, expires - time.time()) + 0.5)
    _try("expired", _leaked_client(late), outcomes)
    _try("replayed", _leaked_client(first), outcomes)


def test_splitfed_v1_runs_over_the_stream_and_intruders_change_nothing(
    tls_federation: LocalFederation, tmp_path: Path
) -> None:
    # Prepare: the endpoint on 127.0.0.1:PORT with certificates from the deploy
    # tooling, advertised as 127.0.0.2, where a proxy relays (and keeps) every
    # byte between the SuperNodes and the endpoint; the app's ClientApp leaks its
    # tickets to a prober that tries them (and forged ones) while sessions run;
    # partition 1's handler of round 2 starts only after its ticket expired
    port = free_port()
    tls = generate_tls(tmp_path / "stream-tls", hosts=("127.0.0.1", "127.0.0.2"))
    proxy = CapturingProxy(("127.0.0.2", port), ("127.0.0.1", port))
    app, spy = _spy_app(tmp_path, late=(1, 1))
    outcomes: list[str] = []
    prober = threading.Thread(
        target=_probe_while_streaming,
        args=(proxy, spy, port, tls.ca_cert.read_bytes(), outcomes),
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
            f'split.stream-advertise="127.0.0.2" split.stream-connect-timeout=20 '
            f'split.stream-tls-dir="{tls.ca_cert.parent}" output-dir="{out}"',
            app_dir=app,
        )
    finally:
        proxy.close()
    prober.join(60)

    # Assert: every intruder was refused, for the right reason
    assert [o.split(":")[0] for o in outcomes] == [
        "second connection",
        "forged",
        "wrong-ca",
        "expired",
        "replayed",
    ], outcomes
    second, forged, wrong_ca, expired, replayed = outcomes
    assert "already used" in second
    assert "proof does not match" in forged or "unknown session" in forged
    assert wrong_ca == "wrong-ca: unreachable"
    assert "expired" in expired
    assert "already used" in replayed or "unknown session" in replayed
    # ... and the run did not notice them: round 1 with both nodes, every step
    # over the stream; round 2 drops only the node whose ticket expired
    assert status["status"] == FINISHED_COMPLETED, status
    results = read_outputs(out)
    assert results["completed_rounds"] == 2
    first, second_round = results["rounds"][1:]
    assert first["train_replies"] == 2 and first["failures"] == 0
    assert second_round["train_replies"] == 1 and second_round["failures"] == 1
    for record in (first, second_round):
        assert record["extra"]["exchanges"] > 5  # one per step, no message each
        assert record["extra"]["session-seconds"] > 0
    assert results["rounds"][-1]["extra"]["split-inference-examples"] > 0
    # what crossed the wire: sessions through the proxy, no plaintext activations
    assert proxy.connections >= 4  # round 1: 2 nodes, round 2: 1, inference
    captured = bytes(proxy.captured)
    config = make_run_config(STREAMED)
    plaintext = [first_activations(config, p, 2) for p in (0, 1)]
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
