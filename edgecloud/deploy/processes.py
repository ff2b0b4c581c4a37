"""Start flower-superlink / flower-supernode with PID files; stop them by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgecloud.deploy.certificates import TlsFiles


@dataclass(frozen=True)
class ManagedProcess:
    """A started process: its name, PID, and where its output goes."""

    name: str
    pid: int
    log_path: Path


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
    (torch among them) are installed once, with the project, not per run.
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
            str(tls.ca_cert),
            "--ssl-certfile",
            str(tls.server_cert),
            "--ssl-keyfile",
            str(tls.server_key),
        ]
    if supernode_auth:
        cmd.append("--enable-supernode-auth")
    if database is not None:
        cmd += ["--database", str(database)]
    return cmd


def supernode_command(
    superlink: str,
    port: int,
    node_config: Mapping[str, int | float | str],
    *,
    root_certificates: Path | None = None,
    auth_private_key: Path | None = None,
) -> list[str]:
    """``flower-supernode`` arguments; ``node_config`` becomes ``--node-config``."""
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
        cmd += ["--root-certificates", str(root_certificates)]
    if auth_private_key is not None:
        cmd += ["--auth-supernode-private-key", str(auth_private_key)]
    return cmd


def start_process(
    name: str,
    command: Sequence[str],
    workdir: Path,
    env: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """Start ``command`` in its own session, logging to ``workdir/<name>.log``.

    The PID goes to ``workdir/<name>.pid`` so that :func:`stop_processes` (or
    ``python -m edgecloud.deploy stop``) can stop it later.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # its own process group: children stop with it
        )
    (workdir / f"{name}.pid").write_text(f"{process.pid}\n")
    return ManagedProcess(name, process.pid, log_path)


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
        if not _alive(process.pid):
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


def stop_processes(workdir: Path, grace: float = 10.0) -> list[int]:
    """Stop each process with a PID file in ``workdir`` (TERM, then KILL)."""
    stopped = []
    for pid_file in sorted(workdir.glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            pid_file.unlink()
            continue
        stop_pid(pid, grace)
        pid_file.unlink()
        stopped.append(pid)
    return stopped


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM ``pid`` and its process group, wait ``grace`` s, then SIGKILL them."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for kill in (os.kill, os.killpg):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            return


def _alive(pid: int) -> bool:
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
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
