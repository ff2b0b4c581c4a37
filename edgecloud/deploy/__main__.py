r"""``python -m edgecloud.deploy``: certificates, SuperLink/SuperNodes, runs, stop.

Examples (see the README's "Real deployment" section)::

    python -m edgecloud.deploy certs --out deploy-work/certs --host 10.0.0.5
    python -m edgecloud.deploy superlink --workdir deploy-work --port 9092 \
        --tls-dir deploy-work/certs --auth --host 0.0.0.0 --connection edgecloud-tls
    python -m edgecloud.deploy node-key --out keys --name node0
    python -m edgecloud.deploy register --connection edgecloud-tls \
        --public-key keys/node0.pub
    python -m edgecloud.deploy supernode --workdir deploy-work \
        --superlink 10.0.0.5:9092 --partition-id 0 --num-partitions 2 \
        --ca ca.crt --auth-key keys/node0
    python -m edgecloud.deploy run --connection edgecloud-tls
    python -m edgecloud.deploy stop --workdir deploy-work
    python -m edgecloud.deploy local --workdir deploy-work --tls --auth  # loopback
    python -m edgecloud.deploy simulate --num-supernodes 10   # the main job (make run)

Paths are relative to where you run the command. ``superlink`` and ``supernode``
return once the process serves / is connected (``--timeout``); each SuperNode gets
a free Runtime API port unless ``--port`` is given, so several share a machine.
Exit codes: 0 done, 1 a process failed or was refused (it is stopped again), 2 bad
input (nothing started); either failure prints one line.
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from edgecloud.deploy import inputs
from edgecloud.deploy.certificates import generate_node_key, generate_tls
from edgecloud.deploy.federation import start_local_federation
from edgecloud.deploy.flwr_cli import (
    FINISHED_COMPLETED,
    add_connection,
    flwr,
    flwr_env,
    flwr_home_of,
    known_connections,
    one_line,
    submit_run,
    wait_for_run,
)
from edgecloud.deploy.inputs import BadInputError
from edgecloud.deploy.local_superlink import (
    ensure_no_runtime_installs,
    stop_local_superlinks,
)
from edgecloud.deploy.processes import (
    SUPERLINK_SERVING,
    SUPERNODE_CONNECTED,
    AlreadyRunningError,
    ManagedProcess,
    StartupError,
    command_line,
    free_port,
    refusal_message,
    running_pid,
    running_processes,
    start_process,
    stop_process,
    stop_processes,
    superlink_command,
    supernode_command,
    wait_until_started,
)

Env = dict[str, str]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edgecloud.deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("certs", help="generate a CA and a SuperLink TLS certificate")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--host",
        action="append",
        default=[],
        help="extra name/IP SuperNodes dial (repeatable); localhost always included",
    )

    p = sub.add_parser("node-key", help="generate a SuperNode authentication key pair")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", required=True)

    p = sub.add_parser("superlink", help="start flower-superlink in the background")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--port", type=int, default=9092)
    p.add_argument(
        "--host", default="127.0.0.1", help="0.0.0.0 to accept other machines"
    )
    p.add_argument(
        "--tls-dir", type=Path, help="directory from 'certs'; insecure if omitted"
    )
    p.add_argument(
        "--auth", action="store_true", help="require registered SuperNode keys"
    )
    p.add_argument("--connection", help="name to add to $FLWR_HOME/config.toml")
    _add_timeout(p, "serving")

    p = sub.add_parser(
        "register", help="register a SuperNode public key (before it connects)"
    )
    p.add_argument("--connection", required=True)
    p.add_argument("--public-key", type=Path, required=True)
    p.add_argument("--name")

    p = sub.add_parser("supernode", help="start flower-supernode in the background")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="this node's Runtime API port (default: a free one, so several "
        "SuperNodes can share a machine)",
    )
    p.add_argument("--partition-id", type=int, required=True)
    p.add_argument("--num-partitions", type=int, required=True)
    p.add_argument("--data-dir", type=Path, help="node-local dataset directory")
    p.add_argument(
        "--cameras", help="testbed tasks: this node's camera ids, e.g. '0,3'"
    )
    p.add_argument("--ca", type=Path, help="CA certificate; insecure if omitted")
    p.add_argument("--auth-key", type=Path, help="private key from 'node-key'")
    p.add_argument(
        "--name", help="process name for the PID/log files (default supernode<id>)"
    )
    _add_timeout(p, "connected")

    p = sub.add_parser("local", help="SuperLink + N SuperNodes on 127.0.0.1")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--num-supernodes", type=int, default=2)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--auth", action="store_true")
    _add_timeout(p, "up")

    p = sub.add_parser(
        "run", help="submit the app, stream its logs, fail unless completed"
    )
    p.add_argument("--connection", required=True)
    p.add_argument("--app", type=Path, default=Path("."))
    p.add_argument("--run-config", default=None)

    p = sub.add_parser("simulate", help="the main job: local simulation via flwr run")
    p.add_argument("--app", type=Path, default=Path("."))
    p.add_argument("--num-supernodes", type=int, default=10)
    p.add_argument("--run-config", default=None)

    p = sub.add_parser("stop", help="stop every process started in a workdir, by PID")
    p.add_argument("--workdir", type=Path)
    p.add_argument(
        "--local-superlink",
        action="store_true",
        help="also stop the local-simulation SuperLink",
    )
    return parser


def _add_timeout(parser: argparse.ArgumentParser, state: str) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help=f"seconds to wait until it is {state}, else stop it and fail (default 60)",
    )


# ------------------------------------------------------------------ key material
def _certs(args: argparse.Namespace, env: Env) -> int:
    out = inputs.output_dir("--out", args.out)
    inputs.not_overwritten(
        "--out",
        args.out,
        [out / "ca.crt", out / "server.pem", out / "server.key"],
        "a CA that SuperNodes may already trust",
    )
    for host in args.host:
        if not host or any(c.isspace() for c in host):
            raise BadInputError(f"--host {host!r}: expected a host name or IP address")
    files = generate_tls(out, ("localhost", "127.0.0.1", *args.host))
    print(f"CA: {files.ca_cert}\ncert: {files.server_cert}\nkey: {files.server_key}")
    return 0


def _node_key(args: argparse.Namespace, env: Env) -> int:
    out = inputs.output_dir("--out", args.out)
    name = inputs.file_name("--name", args.name)
    inputs.not_overwritten(
        "--name",
        name,
        [out / name, out / f"{name}.pub"],
        "a key that may be registered",
    )
    keys = generate_node_key(out, name)
    print(f"private: {keys.private_key}\npublic: {keys.public_key}")
    return 0


def _register(args: argparse.Namespace, env: Env) -> int:
    public_key = inputs.public_key("--public-key", args.public_key)
    _known_connection(args.connection, env)
    cmd = ["supernode", "register", str(public_key), args.connection]
    print(flwr(cmd + (["--name", args.name] if args.name else []), env).stdout.strip())
    return 0


# ------------------------------------------------------------------ processes
def _superlink(args: argparse.Namespace, env: Env) -> int:
    workdir = inputs.output_dir("--workdir", args.workdir)
    tls = inputs.tls_dir("--tls-dir", args.tls_dir) if args.tls_dir else None
    if args.auth and tls is None:
        raise BadInputError("--auth: requires --tls-dir (SuperNode auth needs TLS)")
    inputs.available_port(
        "--port", args.port, args.host, "is a SuperLink already running there?"
    )
    timeout = inputs.positive_seconds("--timeout", args.timeout)
    if (pid := running_pid(workdir, "superlink")) is not None:
        raise BadInputError(
            f"--workdir {args.workdir}: its SuperLink (PID {pid}) is still running; "
            f"stop it first (stop --workdir {args.workdir})"
        )
    proc = start_process(
        "superlink",
        superlink_command(
            args.port,
            host=args.host,
            tls=tls,
            supernode_auth=args.auth,
            database=workdir / "superlink.db",
        ),
        workdir,
        env,
    )
    _wait_or_stop(proc, SUPERLINK_SERVING, timeout, f"serving on port {args.port}")
    print(
        f"SuperLink PID {proc.pid} serving on {args.host}:{args.port}; "
        f"log {proc.log_path}"
    )
    if args.connection:
        address = _dial_address(args.host, args.port)
        add_connection(
            env,
            args.connection,
            address,
            root_certificates=tls.ca_cert if tls else None,
        )
        config = flwr_home_of(env) / "config.toml"
        print(f"connection '{args.connection}' -> {address} in {config}")
    return 0


def _supernode(args: argparse.Namespace, env: Env) -> int:
    workdir = inputs.output_dir("--workdir", args.workdir)
    link_host, link_port = inputs.host_port("--superlink", args.superlink)
    inputs.partition(args.partition_id, args.num_partitions)
    node_config: dict[str, int | float | str] = {
        "partition-id": args.partition_id,
        "num-partitions": args.num_partitions,
    }
    if args.data_dir is not None:
        node_config["data-dir"] = str(
            inputs.existing_dir(
                "--data-dir", args.data_dir, "the node's dataset directory"
            )
        )
    if args.cameras is not None:
        node_config["cameras"] = inputs.camera_ids("--cameras", args.cameras)
    ca = inputs.ca_certificate("--ca", args.ca) if args.ca else None
    key = inputs.private_key("--auth-key", args.auth_key) if args.auth_key else None
    if key is not None and ca is None:
        raise BadInputError("--auth-key: requires --ca (SuperNode auth needs TLS)")
    name = inputs.file_name("--name", args.name or f"supernode{args.partition_id}")
    _not_running(workdir, name, key, args)
    port = (
        free_port()
        if args.port is None
        else inputs.available_port(
            "--port", args.port, "127.0.0.1", "omit --port to get a free one"
        )
    )
    timeout = inputs.positive_seconds("--timeout", args.timeout)
    _reachable(link_host, link_port, args.superlink)
    proc = start_process(
        name,
        supernode_command(
            args.superlink,
            port,
            node_config,
            root_certificates=ca,
            auth_private_key=key,
        ),
        workdir,
        env,
    )
    connected = _wait_or_stop(
        proc,
        SUPERNODE_CONNECTED,
        timeout,
        f"connected to {args.superlink}",
        refused=refusal_message(name, args.superlink),
    )
    print(
        f"SuperNode {name} PID {proc.pid} connected to {args.superlink} as node "
        f"{connected.group(1)} (partition {args.partition_id} of "
        f"{args.num_partitions}, Runtime API port {port}); log {proc.log_path}"
    )
    return 0


def _local(args: argparse.Namespace, env: Env) -> int:
    workdir = inputs.output_dir("--workdir", args.workdir)
    inputs.at_least("--num-supernodes", args.num_supernodes, 1)
    if args.auth and not args.tls:
        raise BadInputError("--auth: requires --tls (SuperNode auth needs TLS)")
    timeout = inputs.positive_seconds("--timeout", args.timeout)
    if workdir.is_dir() and (running := running_processes(workdir)):
        raise BadInputError(
            f"--workdir {args.workdir}: processes started there still run "
            f"({running}); stop them first (stop --workdir {args.workdir})"
        )
    fed = start_local_federation(
        workdir,
        env,
        num_supernodes=args.num_supernodes,
        tls=args.tls,
        supernode_auth=args.auth,
        startup_timeout=timeout,
    )
    print(
        f"SuperLink {fed.superlink_address}, connection '{fed.connection}', PIDs "
        f"{[p.pid for p in fed.processes]} (all connected)\n"
        f"next: flwr run . {fed.connection} --stream"
        f"\nstop: python -m edgecloud.deploy stop --workdir {args.workdir}"
    )
    return 0


def _stop(args: argparse.Namespace, env: Env) -> int:
    if args.workdir is None and not args.local_superlink:
        raise BadInputError(
            "nothing to stop: pass --workdir DIR and/or --local-superlink"
        )
    if args.workdir is not None:
        workdir = inputs.existing_dir(
            "--workdir", args.workdir, "a directory processes were started from"
        )
        running = sorted(running_processes(workdir).values())
        gone = sorted(set(stop_processes(workdir)) - set(running))
        print(f"stopped PIDs {running}" + (f"; already gone: {gone}" if gone else ""))
    if args.local_superlink:
        print(f"stopped local SuperLink PIDs {stop_local_superlinks()}")
    return 0


# ------------------------------------------------------------------ runs
def _run(args: argparse.Namespace, env: Env) -> int:
    app = _app_dir(args.app)
    _known_connection(args.connection, env)
    return _submit_and_check(app, args.connection, _run_config(args), env)


def _simulate(args: argparse.Namespace, env: Env) -> int:
    inputs.at_least("--num-supernodes", args.num_supernodes, 1)
    app = _app_dir(args.app)
    run_config = _run_config(args)
    ensure_no_runtime_installs(env)
    flwr(
        [
            "federation",
            "simulation-config",
            "--num-supernodes",
            str(args.num_supernodes),
            "--client-resources-num-cpus",
            "1",
        ],
        env,
    )
    return _submit_and_check(app, "local", run_config, env)


def _submit_and_check(
    app: Path, connection: str, run_config: str | None, env: Env
) -> int:
    run_id = submit_run(app, connection, env, run_config)
    print(f"submitted run {run_id} to '{connection}'", flush=True)
    status = wait_for_run(run_id, connection, env)
    print(
        f"run {run_id}: {status['status']} ({status.get('status-details')}), "
        f"{float(status.get('elapsed', 0.0)):.1f} s",
        flush=True,
    )
    return 0 if status["status"] == FINISHED_COMPLETED else 1


# ------------------------------------------------------------------ helpers
def _wait_or_stop(
    proc: ManagedProcess,
    ready: re.Pattern[str],
    timeout: float,
    what: str,
    refused: str | None = None,
) -> re.Match[str]:
    """Wait for ``ready``; on failure stop what was started, then re-raise."""
    try:
        return wait_until_started(
            proc, ready, timeout=timeout, what=what, refused=refused
        )
    except BaseException:
        stop_process(proc)
        raise


def _not_running(
    workdir: Path, name: str, key: Path | None, args: argparse.Namespace
) -> None:
    """Refuse a second live process under one name, or one key on two nodes."""
    if (pid := running_pid(workdir, name)) is not None:
        raise BadInputError(
            f"--name {name}: a SuperNode of that name (PID {pid}) still runs from "
            f"--workdir {args.workdir}; stop it or pass another --name"
        )
    if key is None:
        return
    for other, pid in running_processes(workdir).items():
        if str(key) in command_line(pid):
            raise BadInputError(
                f"--auth-key {args.auth_key}: already used by {other} (PID {pid}); "
                "a key serves one SuperNode at a time (make another with node-key)"
            )


def _reachable(host: str, port: int, shown: str) -> None:
    """Fail fast if nothing listens on the SuperLink's address."""
    try:
        with socket.create_connection((host, port), timeout=5.0):
            return
    except OSError as exc:
        raise StartupError(
            f"cannot reach the SuperLink at --superlink {shown} ({exc}); start it "
            "first, or check HOST:PORT and the firewall"
        ) from None


def _known_connection(name: str, env: Env) -> None:
    known = known_connections(env)
    if name not in known:
        config = flwr_home_of(env) / "config.toml"
        raise BadInputError(
            f"--connection {name}: not in {config} (known: {', '.join(known)}); "
            "'superlink --connection NAME' adds it"
        )


def _run_config(args: argparse.Namespace) -> str | None:
    if args.run_config is None:
        return None
    return inputs.run_config("--run-config", args.run_config)


def _app_dir(value: Path) -> Path:
    app = inputs.existing_dir("--app", value, "the app directory (with pyproject.toml)")
    if not (app / "pyproject.toml").is_file():
        raise BadInputError(
            f"--app {value}: no pyproject.toml; expected the app directory"
        )
    return app


def _dial_address(host: str, port: int) -> str:
    """Where a ``flwr`` command on this machine reaches a SuperLink bound to host."""
    if host in ("0.0.0.0", "", "::"):
        return f"127.0.0.1:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_COMMANDS: dict[str, Callable[[argparse.Namespace, Env], int]] = {
    "certs": _certs,
    "node-key": _node_key,
    "register": _register,
    "superlink": _superlink,
    "supernode": _supernode,
    "local": _local,
    "run": _run,
    "simulate": _simulate,
    "stop": _stop,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code.

    Bad input exits 2 and a runtime failure 1, each with one line on stderr (no
    traceback) and nothing left running that this call started.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    try:
        return _COMMANDS[args.command](args, flwr_env())
    except (BadInputError, AlreadyRunningError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"{prog}: failed: {one_line(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
