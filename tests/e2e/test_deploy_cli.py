"""``python -m edgecloud.deploy`` as a user runs it, against one TLS + auth SuperLink.

The module starts one flower-superlink through the CLI (relative ``--tls-dir``) in
``server/`` and registers two keys made in ``device/``. The tests then start real
flower-supernode processes from ``device/`` with relative ``--ca``/``--auth-key``
(the processes run in ``device/work``), two of them without ``--port``; a missing
key exits 2 and starts nothing; a SuperNode restarted right after a SIGKILL is
reported as refused (the SuperLink still counts it online); the last test stops
everything by PID and checks that no PID is alive. The tests share the SuperLink and
run in file order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgecloud.deploy.flwr_cli import flwr, flwr_env
from edgecloud.deploy.processes import (
    command_line,
    free_port,
    is_alive,
    running_pid,
    running_processes,
)

pytestmark = pytest.mark.slow

PROG = "python -m edgecloud.deploy"
CONNECTION = "edgecloud-e2e"


@dataclass
class Site:
    """One machine playing the SuperLink host (server/) and a device (device/)."""

    root: Path
    env: dict[str, str]
    superlink: str  # HOST:PORT the SuperNodes dial
    pids: set[int] = field(default_factory=set)  # every PID the CLI started
    node_ids: dict[str, str] = field(default_factory=dict)  # name -> SuperLink id

    @property
    def device(self) -> Path:
        return self.root / "device"

    @property
    def server(self) -> Path:
        return self.root / "server"


def deploy(
    site: Site, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "edgecloud.deploy", *args],
        cwd=cwd or site.root,
        env=site.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.args, done.stdout, done.stderr)
    return done.stdout


def start_node(
    site: Site, key: str, partition_id: int
) -> subprocess.CompletedProcess[str]:
    """The README's supernode command from device/, relative paths, no --port."""
    return deploy(
        site,
        "supernode",
        "--workdir",
        "work",
        "--superlink",
        site.superlink,
        "--partition-id",
        str(partition_id),
        "--num-partitions",
        "2",
        "--ca",
        "ca.crt",
        "--auth-key",
        f"keys/{key}",
        cwd=site.device,
    )


def node_status(site: Site) -> dict[str, str]:
    """SuperLink node id -> online/offline, from ``flwr supernode list``."""
    out = flwr(["supernode", "list", CONNECTION, "--format", "json"], site.env).stdout
    nodes = json.loads(out[out.index("{") :])["nodes"]
    return {str(n["node-id"]): str(n["status"]) for n in nodes}


def processes_mentioning(path: Path) -> list[int]:
    """Live processes with ``path`` (or a path below it) in their arguments."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        argv = command_line(int(proc.name))
        if any(str(path) in arg for arg in argv) and is_alive(int(proc.name)):
            pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("deploy-cli")
    port = free_port()
    site = Site(root, flwr_env(root / "flwr_home"), f"127.0.0.1:{port}")
    site.device.mkdir()
    try:
        # server: certificates and the SuperLink, paths relative to root
        ok(deploy(site, "certs", "--out", "server/certs"))
        ok(
            deploy(
                site,
                "superlink",
                "--workdir",
                "server/work",
                "--port",
                str(port),
                "--tls-dir",
                "server/certs",
                "--auth",
                "--connection",
                CONNECTION,
            )
        )
        superlink = running_pid(site.server / "work", "superlink")
        assert superlink is not None
        site.pids.add(superlink)
        # device: two keys, registered on the server; the CA copied over
        for key in ("node0", "node1"):
            ok(
                deploy(
                    site, "node-key", "--out", "keys", "--name", key, cwd=site.device
                )
            )
            ok(
                deploy(
                    site,
                    "register",
                    "--connection",
                    CONNECTION,
                    "--public-key",
                    f"device/keys/{key}.pub",
                )
            )
        shutil.copy(site.server / "certs" / "ca.crt", site.device / "ca.crt")
        yield site
    finally:
        # a safety net if the last test did not run; it asserts the stop itself
        for workdir in (site.device / "work", site.server / "work"):
            if workdir.is_dir():
                deploy(site, "stop", "--workdir", str(workdir))


def test_relative_key_and_ca_from_another_cwd_connect(site: Site) -> None:
    # Execute: cwd device/, the process runs in device/work
    done = start_node(site, "node0", 0)

    # Assert
    out = ok(done)
    match = re.search(r"PID (\d+) connected to \S+ as node (\d+)", out)
    assert match is not None, out
    pid = int(match.group(1))
    site.pids.add(pid)
    site.node_ids["supernode0"] = match.group(2)
    assert is_alive(pid)
    assert running_pid(site.device / "work", "supernode0") == pid


def test_two_supernodes_on_one_machine_without_port_both_connect(site: Site) -> None:
    # Execute: the second node on the same machine, no --port either
    done = start_node(site, "node1", 1)

    # Assert
    out = ok(done)
    match = re.search(r"PID (\d+) connected to \S+ as node (\d+)", out)
    assert match is not None, out
    site.pids.add(int(match.group(1)))
    site.node_ids["supernode1"] = match.group(2)
    running = running_processes(site.device / "work")
    assert set(running) == {"supernode0", "supernode1"}
    ports = {
        argv[argv.index("--port") + 1] for argv in map(command_line, running.values())
    }
    assert len(ports) == 2 and "9094" not in ports
    status = node_status(site)
    assert [status[site.node_ids[n]] for n in ("supernode0", "supernode1")] == [
        "online",
        "online",
    ]


def test_a_missing_key_exits_2_with_one_line_and_starts_nothing(site: Site) -> None:
    # Prepare
    before = running_processes(site.device / "work")

    # Execute
    done = start_node(site, "node9", 0)

    # Assert
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"{PROG} supernode: error: --auth-key keys/node9 ")
    assert f"({site.device / 'keys' / 'node9'}): no such file" in done.stderr
    assert running_processes(site.device / "work") == before
    assert not processes_mentioning(site.device / "keys" / "node9")


def test_a_second_superlink_on_a_taken_port_exits_2(site: Site) -> None:
    # Execute
    port = site.superlink.rsplit(":", 1)[1]
    done = deploy(site, "superlink", "--workdir", "server/other", "--port", port)

    # Assert
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"{PROG} superlink: error: --port {port}: already in use on 127.0.0.1"
    )
    assert not (site.server / "other" / "superlink.pid").exists()


def test_a_restart_right_after_a_kill_is_reported_refused(site: Site) -> None:
    # Prepare: a crash (SIGKILL): the node cannot deactivate itself
    pid = running_pid(site.device / "work", "supernode0")
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed_at = time.monotonic()

    # Execute
    done = start_node(site, "node0", 0)
    took = time.monotonic() - killed_at

    # Assert: refused, with flwr's offline timeout and the log; nothing left
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(
        f"{PROG} supernode: failed: the SuperLink at {site.superlink} refused to "
        "activate supernode0"
    )
    assert "killed less than 60 s ago" in done.stderr
    assert "wait 60 s after the kill" in done.stderr
    assert done.stderr.rstrip().endswith(
        f"log {site.device / 'work' / 'supernode0.log'}"
    )
    assert took < 37.5  # inside the window: 60 s after the last heartbeat (<=22.5 s)
    assert node_status(site)[site.node_ids["supernode0"]] == "online"  # the reason
    assert not (site.device / "work" / "supernode0.pid").exists()
    assert not processes_mentioning(site.device / "keys" / "node0")


def test_stop_ends_every_started_pid(site: Site) -> None:
    # Execute
    device = deploy(site, "stop", "--workdir", "work", cwd=site.device)
    server = deploy(site, "stop", "--workdir", "server/work")

    # Assert
    assert ok(device).startswith("stopped PIDs [")
    assert ok(server).startswith("stopped PIDs [")
    assert site.pids and not [pid for pid in site.pids if is_alive(pid)]
    assert not list(site.root.rglob("*.pid"))
    assert not processes_mentioning(site.root)  # flower-superexec included
