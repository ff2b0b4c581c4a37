"""The managed local-simulation SuperLink that ``flwr run .`` starts on demand."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from edgecloud.deploy.processes import stop_pid

_FLAG = "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"
logger = logging.getLogger(__name__)


def local_superlink_pids(port: int) -> list[int]:
    """PIDs of ``flower-superlink --simulation`` processes serving ``port`` (Linux)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv]
        if (
            any(a.endswith("flower-superlink") for a in text[:2])
            and "--simulation" in text
            and str(port) in text
        ):
            pids.append(int(proc.name))
    return pids


def installs_dependencies_per_run(pid: int) -> bool:
    """True if the SuperLink ``pid`` was started without disabling per-run installs."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False  # not ours to inspect: assume it is fine
    return f"{_FLAG}=1".encode() not in environ


def ensure_no_runtime_installs(env: Mapping[str, str]) -> None:
    """Stop a local SuperLink that would ``uv sync`` torch & co. into every run.

    ``flwr`` reuses whatever SuperLink answers on the local port; one started
    without ``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1`` (for example from a
    shell that lacked it) reinstalls the app's dependencies per run. The next
    ``flwr`` call starts a fresh one with the caller's environment.
    """
    port = int(env.get("FLWR_LOCAL_SUPERLINK_HTTP_API_PORT", "39091"))
    if not Path("/proc").is_dir():
        return
    for pid in local_superlink_pids(port):
        if installs_dependencies_per_run(pid):
            logger.warning(
                "stopping local SuperLink (PID %d): it installs dependencies per run",
                pid,
            )
            stop_pid(pid)


def stop_local_superlinks(port: int | None = None) -> list[int]:
    """Stop the local-simulation SuperLink(s) on ``port`` by PID; return the PIDs."""
    port = port or int(os.environ.get("FLWR_LOCAL_SUPERLINK_HTTP_API_PORT", "39091"))
    pids = local_superlink_pids(port)
    for pid in pids:
        stop_pid(pid)
    return pids
