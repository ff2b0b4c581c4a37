"""Drive the ``flwr`` CLI: connections, submitting a run, waiting, reading status."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

# flwr spawns flower-superlink & co. by name: the venv's bin must be on PATH.
_BIN_DIR = str(Path(sys.executable).parent)
FINISHED_COMPLETED = "finished:completed"


def flwr_env(
    flwr_home: Path | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment for flwr commands: venv on PATH, offline, no per-run installs."""
    env = dict(os.environ)
    env["PATH"] = f"{_BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    env.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    env.update(extra or {})
    return env


def flwr_home_of(env: Mapping[str, str]) -> Path:
    """``$FLWR_HOME`` of ``env`` (default ``~/.flwr``)."""
    return Path(env.get("FLWR_HOME", str(Path.home() / ".flwr"))).expanduser()


def add_connection(
    env: Mapping[str, str],
    name: str,
    address: str,
    *,
    root_certificates: Path | None = None,
) -> None:
    """Add or replace ``[superlink.<name>]`` in ``$FLWR_HOME/config.toml``.

    Insecure if ``root_certificates`` is None. Other connections are kept.
    """
    path = flwr_home_of(env) / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = tomllib.loads(path.read_text()) if path.exists() else {}
    superlink = config.setdefault("superlink", {})
    superlink.setdefault("default", "local")
    superlink.setdefault("local", {"address": ":local:"})
    entry: dict[str, Any] = {"address": address}
    if root_certificates is None:
        entry["insecure"] = True
    else:
        entry["root-certificates"] = str(root_certificates.absolute())
    superlink[name] = entry
    path.write_text(tomli_w.dumps(config))


def known_connections(env: Mapping[str, str]) -> list[str]:
    """Connection names in ``$FLWR_HOME/config.toml`` (``local`` always exists)."""
    path = flwr_home_of(env) / "config.toml"
    try:
        config = tomllib.loads(path.read_text()) if path.exists() else {}
    except (OSError, tomllib.TOMLDecodeError):
        config = {}
    superlink = config.get("superlink", {})
    names = {"local"} | {k for k, v in superlink.items() if isinstance(v, dict)}
    return sorted(names)


def one_line(text: str) -> str:
    """``text`` on one line: rich's box-drawing frame and blank lines dropped."""
    words = re.sub(r"[\u2500-\u257f]", " ", text).split()
    return " ".join(words)


def flwr(
    args: Sequence[str],
    env: Mapping[str, str],
    timeout: float = 120.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``flwr <args>``; raise with its output if it exits non-zero."""
    done = subprocess.run(
        ["flwr", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"flwr {' '.join(args)} exited {done.returncode}: "
            + one_line(f"{done.stdout}\n{done.stderr}")
        )
    return done


def submit_run(
    app_dir: Path,
    connection: str,
    env: Mapping[str, str],
    run_config: str | None = None,
    federation_config: str | None = None,
) -> int:
    """``flwr run APP CONNECTION --format json``; return the run id."""
    args = ["run", str(app_dir), connection, "--format", "json"]
    if run_config:
        args += ["--run-config", run_config]
    if federation_config:
        args += ["--federation-config", federation_config]
    out = flwr(args, env, timeout=300.0, cwd=app_dir).stdout
    data = json.loads(out[out.index("{") :])
    if not data.get("success"):
        raise RuntimeError(f"flwr run failed: {data}")
    return int(data["run-id"])


def run_status(run_id: int, connection: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The ``flwr ls --run-id`` entry of ``run_id`` (status, details, elapsed, ...)."""
    out = flwr(
        ["ls", connection, "--run-id", str(run_id), "--format", "json"], env
    ).stdout
    runs = json.loads(out[out.index("{") :])["runs"]
    if not runs:
        raise RuntimeError(f"run {run_id} not found on {connection}")
    return dict(runs[0])


def wait_for_run(
    run_id: int,
    connection: str,
    env: Mapping[str, str],
    timeout: float = 1800.0,
    stream_logs: bool = True,
) -> dict[str, Any]:
    """Stream the run's ServerApp logs (optional) and return its final status entry.

    ``flwr run --stream`` exits 0 even for failed runs, so callers must check the
    returned ``status`` against :data:`FINISHED_COMPLETED`. The wait follows
    ``flwr log --stream`` (one idle process until the run ends; its output is
    dropped unless ``stream_logs``) rather than polling ``flwr ls``: every poll
    starts a Python process that imports flwr, about a second of CPU, which on a
    small machine slows the very run it waits for.
    """
    deadline = time.monotonic() + timeout
    quiet = None if stream_logs else subprocess.DEVNULL
    # on a timeout the status below says how far the run got
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            ["flwr", "log", str(run_id), connection, "--stream"],
            env=dict(env),
            timeout=timeout,
            check=False,
            stdout=quiet,
            stderr=quiet,
        )
    while True:
        status = run_status(run_id, connection, env)
        if str(status["status"]).startswith("finished"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"run {run_id} still {status['status']} after {timeout:.0f} s"
            )
        time.sleep(1.0)
