"""Startup checks read flwr 1.41's real log lines; PIDs are stopped and never reused.

The processes here are fakes (``python -c`` printing flwr's lines), not Flower.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flwr.common import constant

from edgecloud.deploy import processes
from edgecloud.deploy.certificates import TlsFiles
from edgecloud.deploy.processes import (
    OFFLINE_AFTER_S,
    SUPERLINK_SERVING,
    SUPERNODE_CONNECTED,
    AlreadyRunningError,
    Startup,
    StartupError,
    is_alive,
    log_reason,
    running_pid,
    start_process,
    startup_state,
    stop_process,
    stop_processes,
    superlink_command,
    supernode_command,
    wait_until_started,
)
from tests.unit.deploy.fake_flwr import (
    SUPERLINK_UP,
    SUPERNODE_BAD_PATH,
    SUPERNODE_PORT_TAKEN,
    SUPERNODE_REFUSED,
    SUPERNODE_RETRYING,
    SUPERNODE_UP,
    fake,
)


def test_heartbeat_constants_match_the_installed_flwr() -> None:
    # Assert: the wait printed on a refusal is flwr's own offline timeout
    assert processes.FLWR_HEARTBEAT_PATIENCE == constant.HEARTBEAT_PATIENCE
    assert (
        processes.FLWR_HEARTBEAT_DEFAULT_INTERVAL_S
        == constant.HEARTBEAT_DEFAULT_INTERVAL
    )
    assert OFFLINE_AFTER_S == 60


@pytest.mark.parametrize(
    ("log", "alive", "ready", "expected"),
    [
        # the SuperLink bound its port
        (SUPERLINK_UP, True, SUPERLINK_SERVING, Startup.READY),
        # not watched for refusals (the SuperLink's check): a plain exit
        (SUPERNODE_REFUSED, False, SUPERLINK_SERVING, Startup.EXITED),
        # the SuperNode was activated by the SuperLink
        (SUPERNODE_UP, True, SUPERNODE_CONNECTED, Startup.READY),
        # its own Runtime API is up, but that is not "connected"
        (SUPERNODE_UP.rsplit("\n", 2)[0], True, SUPERNODE_CONNECTED, Startup.STARTING),
        # refused and still shutting down: already a refusal
        (SUPERNODE_REFUSED, True, SUPERNODE_CONNECTED, Startup.REFUSED),
        # refused and gone: still a refusal, not a plain exit
        (SUPERNODE_REFUSED, False, SUPERNODE_CONNECTED, Startup.REFUSED),
        # died on a taken port
        (SUPERNODE_PORT_TAKEN, False, SUPERNODE_CONNECTED, Startup.EXITED),
        # printed its ready line, then died: not ready
        (SUPERNODE_UP, False, SUPERNODE_CONNECTED, Startup.EXITED),
        # still retrying the connection
        (SUPERNODE_RETRYING, True, SUPERNODE_CONNECTED, Startup.STARTING),
    ],
    ids=[
        "superlink-serving",
        "unwatched-refusal",
        "supernode-connected",
        "runtime-api-only",
        "refused-alive",
        "refused-dead",
        "port-taken",
        "ready-then-dead",
        "retrying",
    ],
)
def test_startup_state(
    log: str, alive: bool, ready: re.Pattern[str], expected: Startup
) -> None:
    # Prepare: SuperNodes are watched for a refusal, the SuperLink is not
    refusal = processes.SUPERNODE_REFUSED if ready is SUPERNODE_CONNECTED else None

    # Execute / Assert
    assert startup_state(log, alive, ready, refusal) is expected


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        # flwr's coded error wins over "Exit Code: 305"
        (SUPERNODE_REFUSED, "[code: 2004] Failed to activate SuperNode."),
        # the ERROR line says more than the RuntimeError after it
        (
            SUPERNODE_PORT_TAKEN,
            "[Errno 98] error while attempting to bind on address "
            "('127.0.0.1', 9094): address already in use",
        ),
        # colour codes and the level prefix are dropped
        (
            SUPERNODE_BAD_PATH,
            "Path argument `--root-certificates` does not point to a file.",
        ),
        # nothing went wrong yet: the last line
        (SUPERNODE_RETRYING, "Connection attempt failed, retrying in 1.32 seconds"),
        # nothing at all
        ("", "(empty log)"),
    ],
    ids=["refused", "port-taken", "bad-path", "retrying", "empty"],
)
def test_log_reason(log: str, expected: str) -> None:
    # Execute / Assert
    assert log_reason(log) == expected


def test_commands_carry_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: relative paths, as typed in the README, from the user's cwd
    monkeypatch.chdir(tmp_path)
    tls = TlsFiles(Path("c/ca.crt"), Path("c/server.pem"), Path("c/server.key"))

    # Execute
    link = superlink_command(
        9092, tls=tls, supernode_auth=True, database=Path("w/superlink.db")
    )
    node = supernode_command(
        "127.0.0.1:9092",
        9094,
        {"partition-id": 0},
        root_certificates=Path("ca.crt"),
        auth_private_key=Path("keys/node0"),
    )

    # Assert
    assert link[link.index("--ssl-ca-certfile") + 1] == str(tmp_path / "c/ca.crt")
    assert link[link.index("--ssl-keyfile") + 1] == str(tmp_path / "c/server.key")
    assert link[link.index("--database") + 1] == str(tmp_path / "w/superlink.db")
    assert node[node.index("--root-certificates") + 1] == str(tmp_path / "ca.crt")
    assert node[node.index("--auth-supernode-private-key") + 1] == str(
        tmp_path / "keys/node0"
    )


def test_wait_returns_the_connected_line(tmp_path: Path) -> None:
    # Prepare
    proc = start_process("node", fake(SUPERNODE_UP, then_sleep=30), tmp_path)

    # Execute
    try:
        match = wait_until_started(proc, SUPERNODE_CONNECTED, timeout=20)
    finally:
        stop_process(proc)

    # Assert
    assert match.group(1) == "13141801189036072404"


def test_wait_reports_a_refusal_with_the_wait_and_the_log(tmp_path: Path) -> None:
    # Prepare
    proc = start_process("node", fake(SUPERNODE_REFUSED), tmp_path)
    message = processes.refusal_message("node", "127.0.0.1:9092")

    # Execute
    with pytest.raises(StartupError) as raised:
        wait_until_started(proc, SUPERNODE_CONNECTED, timeout=20, refused=message)

    # Assert
    text = str(raised.value)
    assert "\n" not in text
    assert "refused to activate node" in text
    assert f"wait {OFFLINE_AFTER_S} s" in text
    assert text.endswith(f"log {tmp_path / 'node.log'}")


def test_wait_reports_an_early_exit_with_its_reason(tmp_path: Path) -> None:
    # Prepare
    proc = start_process("node", fake(SUPERNODE_PORT_TAKEN), tmp_path)

    # Execute
    with pytest.raises(StartupError) as raised:
        wait_until_started(proc, SUPERNODE_CONNECTED, timeout=20)

    # Assert
    text = str(raised.value)
    assert "\n" not in text
    assert f"node (PID {proc.pid}) exited during startup" in text
    assert "address already in use" in text


def test_wait_times_out_with_the_last_log_line(tmp_path: Path) -> None:
    # Prepare
    proc = start_process("node", fake(SUPERNODE_RETRYING, then_sleep=30), tmp_path)

    # Execute
    try:
        with pytest.raises(StartupError) as raised:
            wait_until_started(
                proc, SUPERNODE_CONNECTED, timeout=0.5, what="connected to x:1"
            )
    finally:
        stop_process(proc)

    # Assert
    assert "not connected to x:1 after 0 s" in str(raised.value)
    assert "Connection attempt failed" in str(raised.value)


def test_an_earlier_run_in_the_same_log_does_not_count(tmp_path: Path) -> None:
    # Prepare: the previous SuperNode of this name connected; logs are appended
    (tmp_path / "node.log").write_text(SUPERNODE_UP)
    proc = start_process("node", fake(SUPERNODE_PORT_TAKEN), tmp_path)

    # Execute / Assert: this start died; the old "SuperNode ID" must not hide it
    with pytest.raises(StartupError, match="exited during startup"):
        wait_until_started(proc, SUPERNODE_CONNECTED, timeout=20)


def test_a_live_pid_file_is_not_overwritten(tmp_path: Path) -> None:
    # Prepare
    first = start_process("node", fake("", then_sleep=30), tmp_path)

    # Execute
    try:
        with pytest.raises(AlreadyRunningError, match=f"PID {first.pid}"):
            start_process("node", fake(""), tmp_path)
        recorded = running_pid(tmp_path, "node")
    finally:
        stop_process(first)

    # Assert
    assert recorded == first.pid
    assert not (tmp_path / "node.pid").exists()


def test_a_reused_pid_is_not_signalled(tmp_path: Path) -> None:
    # Prepare: a PID file whose PID now belongs to another process (start time
    # differs), here a process this test owns
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    (tmp_path / "node.pid").write_text(f"{other.pid}\n1\n")

    # Execute
    try:
        found = running_pid(tmp_path, "node")
        stop_processes(tmp_path, grace=1.0)
        survived = other.poll() is None
    finally:
        other.kill()
        other.wait()

    # Assert
    assert found is None
    assert survived
    assert not (tmp_path / "node.pid").exists()


def test_stop_processes_ends_the_process_group(tmp_path: Path) -> None:
    # Prepare: like a SuperNode and the flower-superexec it spawns
    code = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(c.pid, flush=True); time.sleep(60)"
    )
    proc = start_process("node", [sys.executable, "-c", code], tmp_path)
    deadline = time.monotonic() + 20
    while not proc.new_log().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(proc.new_log().split()[0])

    # Execute
    stopped = stop_processes(tmp_path)

    # Assert
    assert stopped == [proc.pid]
    assert not is_alive(proc.pid)
    assert not is_alive(child)  # the group is gone when stop returns


def test_a_zombie_counts_as_gone() -> None:
    # Prepare: a grandchild that exited but its parent (not us) never reaps it
    code = (
        "import os, sys, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0)\n"
        "print(pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    zombie = int(parent.stdout.readline())
    time.sleep(0.2)

    # Execute
    try:
        alive = is_alive(zombie)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    # Assert
    assert not alive
