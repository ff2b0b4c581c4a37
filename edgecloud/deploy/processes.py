"""Start flower-superlink / flower-supernode, check they came up, stop them by PID."""

from __future__ import annotations

import contextlib
import enum
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgecloud.deploy.certificates import TlsFiles

# What flwr 1.41 logs once a process is up. The SuperLink (uvicorn) prints
# "Uvicorn running on https://0.0.0.0:9092 (Press CTRL+C to quit)" after binding its
# one HTTP(S) port; a SuperNode prints "SuperNode ID: <id>" right after the SuperLink
# activated it (flwr/supernode/start_client_internal.py), and
# "[code: 2004] Failed to activate SuperNode." (exit code 305) when it refused.
SUPERLINK_SERVING = re.compile(r"Uvicorn running on https?://\S+")
SUPERNODE_CONNECTED = re.compile(r"SuperNode ID: (\d+)")
SUPERNODE_REFUSED = re.compile(r"Failed to activate SuperNode")

# A SuperNode that dies without deactivating (SIGKILL, crash, power loss) stays
# "online" on the SuperLink until online_until = last heartbeat + HEARTBEAT_PATIENCE
# x HEARTBEAT_DEFAULT_INTERVAL (flwr/common/constant.py: 2 x 30 s; set in
# LinkState.activate_node / acknowledge_node_heartbeat), and activating an online
# node fails. Heartbeats go out every 17.5-22.5 s, so the wait is 37.5-60 s after
# the kill. A SuperNode stopped with SIGTERM (``stop``) deactivates itself first.
FLWR_HEARTBEAT_PATIENCE = 2
FLWR_HEARTBEAT_DEFAULT_INTERVAL_S = 30
OFFLINE_AFTER_S = FLWR_HEARTBEAT_PATIENCE * FLWR_HEARTBEAT_DEFAULT_INTERVAL_S

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LEVEL = re.compile(r"^(?:ERROR|WARNING|INFO|DEBUG)\s*:\s*")
_FLWR_ERROR = re.compile(r"\[code: \d+\].*")
_PYTHON_ERROR = re.compile(r"^\w+(?:Error|Exception): .+")


@dataclass(frozen=True)
class ManagedProcess:
    """A started process: its name, PID, and where its output goes.

    ``log_offset`` is the log's size before this start: logs are appended to, so
    only what follows it belongs to this process.
    """

    name: str
    pid: int
    log_path: Path
    log_offset: int = 0

    def new_log(self) -> str:
        """What this process wrote to its log so far (colour codes removed)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                return _ANSI.sub("", log.read().decode(errors="replace"))
        except OSError:
            return ""


class StartupError(RuntimeError):
    """A started process died, was refused or did not come up; one-line message."""


class AlreadyRunningError(RuntimeError):
    """A process of the same name in the same workdir is still running."""


class Startup(enum.Enum):
    """Where a starting process stands, judged from its log and its PID."""

    STARTING = "starting"
    READY = "ready"
    REFUSED = "refused"
    EXITED = "exited"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def superlink_command(
    port: int,
    *,
    host: str = "127.0.0.1",
    tls: TlsFiles | None = None,
    supernode_auth: bool = False,
    database: Path | None = None,
) -> list[str]:
    """``flower-superlink`` arguments; insecure unless ``tls`` is given.

    Runtime dependency installation is always disabled: the app's dependencies
    (torch among them) are installed once, with the project, not per run. Paths
    are made absolute: the process runs in its workdir, not the caller's cwd.
    """
    if supernode_auth and tls is None:
        raise ValueError("SuperNode authentication requires TLS; pass tls=")
    cmd = [
        "flower-superlink",
        "--host",
        host,
        "--port",
        str(port),
        "--disable-runtime-dependency-installation",
    ]
    if tls is None:
        cmd.append("--insecure")
    else:
        cmd += [
            "--ssl-ca-certfile",
            str(tls.ca_cert.absolute()),
            "--ssl-certfile",
            str(tls.server_cert.absolute()),
            "--ssl-keyfile",
            str(tls.server_key.absolute()),
        ]
    if supernode_auth:
        cmd.append("--enable-supernode-auth")
    if database is not None:
        cmd += ["--database", str(database.absolute())]
    return cmd


def supernode_command(
    superlink: str,
    port: int,
    node_config: Mapping[str, int | float | str],
    *,
    root_certificates: Path | None = None,
    auth_private_key: Path | None = None,
) -> list[str]:
    """``flower-supernode`` arguments; ``node_config`` becomes ``--node-config``.

    Paths are made absolute: the process runs in its workdir, not the caller's cwd.
    """
    if auth_private_key is not None and root_certificates is None:
        raise ValueError(
            "SuperNode authentication requires TLS; pass root_certificates="
        )
    parts = [
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
        for k, v in node_config.items()
    ]
    cmd = [
        "flower-supernode",
        "--superlink",
        superlink,
        "--port",
        str(port),
        "--node-config",
        " ".join(parts).replace("'", '"'),
    ]
    if root_certificates is None:
        cmd.append("--insecure")
    else:
        cmd += ["--root-certificates", str(root_certificates.absolute())]
    if auth_private_key is not None:
        cmd += ["--auth-supernode-private-key", str(auth_private_key.absolute())]
    return cmd


def running_pid(workdir: Path, name: str) -> int | None:
    """PID in ``workdir/<name>.pid`` if that very process still runs, else None.

    The PID file also records the process's start time (Linux): a PID the OS has
    since given to another process does not count, so it is never signalled.
    """
    try:
        fields = (workdir / f"{name}.pid").read_text().split()
        pid = int(fields[0])
    except (OSError, ValueError, IndexError):
        return None
    if not is_alive(pid):
        return None
    if len(fields) > 1 and _started_at(pid) not in (None, fields[1]):
        return None  # the PID was reused
    return pid


def running_processes(workdir: Path) -> dict[str, int]:
    """Name -> PID of every live process with a PID file in ``workdir``."""
    running = {}
    for pid_file in sorted(workdir.glob("*.pid")):
        pid = running_pid(workdir, pid_file.stem)
        if pid is not None:
            running[pid_file.stem] = pid
    return running


def command_line(pid: int) -> list[str]:
    """The arguments ``pid`` was started with (Linux ``/proc``; else empty)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def start_process(
    name: str,
    command: Sequence[str],
    workdir: Path,
    env: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """Start ``command`` in its own session, logging to ``workdir/<name>.log``.

    The PID goes to ``workdir/<name>.pid`` so that :func:`stop_processes` (or
    ``python -m edgecloud.deploy stop``) can stop it later.

    Raises
    ------
    AlreadyRunningError
        If ``workdir/<name>.pid`` names a live process: overwriting it would lose
        the only record of that PID.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    pid = running_pid(workdir, name)
    if pid is not None:
        raise AlreadyRunningError(
            f"{name} (PID {pid}, {workdir / f'{name}.pid'}) is still running; "
            "stop it first or use another name"
        )
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as log:
        offset = log.tell()
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # its own process group: children stop with it
        )
    started = _started_at(process.pid)
    (workdir / f"{name}.pid").write_text(
        f"{process.pid}\n" + (f"{started}\n" if started else "")
    )
    return ManagedProcess(name, process.pid, log_path, offset)


def startup_state(
    log_text: str,
    alive: bool,
    ready: re.Pattern[str],
    refusal: re.Pattern[str] | None = None,
) -> Startup:
    """Judge a starting process from its new log lines and whether it still runs.

    A ``refusal`` line (SuperNodes: :data:`SUPERNODE_REFUSED`) counts even while the
    process is still shutting down, and a ready line only while it is alive.
    """
    if refusal is not None and refusal.search(log_text):
        return Startup.REFUSED
    if not alive:
        return Startup.EXITED
    if ready.search(log_text):
        return Startup.READY
    return Startup.STARTING


def log_reason(log_text: str) -> str:
    """The one log line that best says why a process failed.

    In order: a flwr error (``[code: 2004] Failed to activate SuperNode.``), the
    first ``ERROR`` line other than flwr's ``Exit Code: N``, a Python exception
    line, the last line.
    """
    raw = [_ANSI.sub("", line).strip() for line in log_text.splitlines()]
    lines = [_LEVEL.sub("", line) for line in raw if line]
    errors = [
        _LEVEL.sub("", line)
        for line in raw
        if _LEVEL.match(line) and line.startswith("ERROR")
    ]
    errors = [line for line in errors if not line.startswith("Exit Code:")]
    candidates = [
        *(m.group(0) for line in lines if (m := _FLWR_ERROR.search(line))),
        *errors,
        *(line for line in lines if _PYTHON_ERROR.match(line)),
        *lines[-1:],
    ]
    return candidates[0][:300] if candidates else "(empty log)"


def refusal_message(name: str, superlink: str) -> str:
    """Why a SuperLink refuses to activate a SuperNode, and how long to wait."""
    return (
        f"the SuperLink at {superlink} refused to activate {name} ('Failed to "
        "activate SuperNode'): either its public key is not registered (run "
        "'register'), another SuperNode with this key is running, or one was "
        "killed less than "
        f"{OFFLINE_AFTER_S} s ago and still counts as online (flwr "
        f"HEARTBEAT_PATIENCE {FLWR_HEARTBEAT_PATIENCE} x HEARTBEAT_DEFAULT_INTERVAL "
        f"{FLWR_HEARTBEAT_DEFAULT_INTERVAL_S} s); wait {OFFLINE_AFTER_S} s after the "
        "kill and start it again"
    )


def wait_until_started(
    process: ManagedProcess,
    ready: re.Pattern[str],
    *,
    timeout: float = 60.0,
    what: str = "up",
    refused: str | None = None,
) -> re.Match[str]:
    """Wait until ``process`` logs ``ready`` (and is alive); return that match.

    Parameters
    ----------
    process
        The started process.
    ready
        :data:`SUPERLINK_SERVING` or :data:`SUPERNODE_CONNECTED`.
    timeout
        Seconds to wait for the ready line.
    what
        What the ready line means, for the timeout message ("serving on ...").
    refused
        For a SuperNode: the message if the SuperLink refuses it
        (:func:`refusal_message`); its log is then watched for
        :data:`SUPERNODE_REFUSED` too.

    Raises
    ------
    StartupError
        If the process exits, is refused, or is not ready within ``timeout``; the
        one-line message ends with the log path. The process is left as it is.
    """
    deadline = time.monotonic() + timeout
    while True:
        text = process.new_log()
        refusal = SUPERNODE_REFUSED if refused is not None else None
        state = startup_state(text, is_alive(process.pid), ready, refusal)
        if state is Startup.READY:
            match = ready.search(text)
            assert match is not None  # READY means it matched
            return match
        if state is Startup.REFUSED:
            raise StartupError(f"{refused}; log {process.log_path}")
        if state is Startup.EXITED:
            raise StartupError(
                f"{process.name} (PID {process.pid}) exited during startup: "
                f"{log_reason(text)}; log {process.log_path}"
            )
        if time.monotonic() > deadline:
            raise StartupError(
                f"{process.name} (PID {process.pid}) not {what} after "
                f"{timeout:.0f} s (last log line: {log_reason(text)}); "
                f"log {process.log_path}"
            )
        time.sleep(0.1)


def wait_for_port(
    port: int, process: ManagedProcess, timeout: float = 60.0, host: str = "127.0.0.1"
) -> None:
    """Wait until ``host:port`` accepts TCP connections.

    Raises
    ------
    RuntimeError
        If the process exits first or ``timeout`` passes; the log tail is included.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(process.pid):
            raise RuntimeError(
                f"{process.name} exited early:\n{_tail(process.log_path)}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(
        f"{process.name} not listening on {host}:{port} after {timeout:.0f} s:\n"
        f"{_tail(process.log_path)}"
    )


def stop_process(process: ManagedProcess, grace: float = 10.0) -> None:
    """Stop one started process by its PID and remove its PID file."""
    stop_pid(process.pid, grace)
    pid_file = process.log_path.with_suffix(".pid")
    with contextlib.suppress(OSError, ValueError, IndexError):
        if int(pid_file.read_text().split()[0]) == process.pid:
            pid_file.unlink()


def stop_processes(workdir: Path, grace: float = 10.0) -> list[int]:
    """Stop each process with a PID file in ``workdir`` (TERM, then KILL).

    Returns every recorded PID (each is gone afterwards); a PID whose process has
    already exited, or was reused by another process, is not signalled.
    """
    stopped = []
    for pid_file in sorted(workdir.glob("*.pid")):
        try:
            recorded = int(pid_file.read_text().split()[0])
        except (ValueError, IndexError):
            pid_file.unlink()
            continue
        pid = running_pid(workdir, pid_file.stem)
        if pid is not None:
            stop_pid(pid, grace)
        pid_file.unlink()
        stopped.append(recorded)
    return stopped


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM ``pid`` and its process group, wait ``grace`` s, then SIGKILL them.

    SIGTERM first: a SuperNode then deactivates itself on the SuperLink and can be
    restarted at once (after SIGKILL the SuperLink refuses it for up to
    :data:`OFFLINE_AFTER_S` s). Returns once ``pid`` and the rest of its group
    (the ``flower-superexec`` it spawned) are gone.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for kill in (os.kill, os.killpg):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (is_alive(pid) or _group(pid)):
            time.sleep(0.1)
        if not is_alive(pid) and not _group(pid):
            return


def is_alive(pid: int) -> bool:
    """True if ``pid`` runs; an exited child is reaped, a zombie counts as gone."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # "pid (comm) S ...": the state follows the last ')'
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): signal 0 is all we know
    return stat[stat.rfind(")") + 2 :][:1] != "Z"


_alive = is_alive  # the name the end-to-end tests import


def _group(pgid: int) -> list[int]:
    """Live (not zombie) members of process group ``pgid`` (Linux ``/proc``)."""
    members = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:
            continue
        # fields after "pid (comm)": state, ppid, pgrp
        state, _, pgrp = stat[stat.rfind(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(stat_path.parent.name))
    return members


def _started_at(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc``), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields after "pid (comm)": state is field 3, starttime field 22
    return stat[stat.rfind(")") + 2 :].split()[19]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
