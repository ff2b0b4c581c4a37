r"""``python -m edgecloud.deploy``: certificates, SuperLink/SuperNodes, runs, stop.

Examples (see the README's "Real deployment" section)::

    python -m edgecloud.deploy certs --out deploy-work/certs --host 10.0.0.5
    python -m edgecloud.deploy superlink --workdir deploy-work --port 9092 \\
        --tls-dir deploy-work/certs --auth --host 0.0.0.0
    python -m edgecloud.deploy node-key --out deploy-work/keys --name node0
    python -m edgecloud.deploy register --connection edgecloud-tls \\
        --public-key deploy-work/keys/node0.pub
    python -m edgecloud.deploy supernode --workdir deploy-work \\
        --superlink 10.0.0.5:9092 --partition-id 0 --num-partitions 2 \\
        --ca deploy-work/certs/ca.crt --auth-key deploy-work/keys/node0
    python -m edgecloud.deploy run --connection edgecloud-tls
    python -m edgecloud.deploy stop --workdir deploy-work
    python -m edgecloud.deploy local --workdir deploy-work --tls --auth  # loopback
    python -m edgecloud.deploy simulate --num-supernodes 10   # the main job (make run)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgecloud.deploy.certificates import TlsFiles, generate_node_key, generate_tls
from edgecloud.deploy.federation import start_local_federation
from edgecloud.deploy.flwr_cli import (
    FINISHED_COMPLETED,
    add_connection,
    flwr,
    flwr_env,
    submit_run,
    wait_for_run,
)
from edgecloud.deploy.local_superlink import (
    ensure_no_runtime_installs,
    stop_local_superlinks,
)
from edgecloud.deploy.processes import (
    start_process,
    stop_processes,
    superlink_command,
    supernode_command,
    wait_for_port,
)


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
        "--port", type=int, default=9094, help="this node's Runtime API port"
    )
    p.add_argument("--partition-id", type=int, required=True)
    p.add_argument("--num-partitions", type=int, required=True)
    p.add_argument("--data-dir", help="node-local dataset directory")
    p.add_argument(
        "--cameras", help="testbed tasks: this node's camera ids, e.g. '0,3'"
    )
    p.add_argument("--ca", type=Path, help="CA certificate; insecure if omitted")
    p.add_argument("--auth-key", type=Path, help="private key from 'node-key'")
    p.add_argument("--name", help="process name for the PID/log files")

    p = sub.add_parser("local", help="SuperLink + N SuperNodes on 127.0.0.1")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--num-supernodes", type=int, default=2)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--auth", action="store_true")

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


def _submit_and_check(
    app: Path, connection: str, run_config: str | None, env: dict[str, str]
) -> int:
    run_id = submit_run(app.absolute(), connection, env, run_config)
    print(f"submitted run {run_id} to '{connection}'", flush=True)
    status = wait_for_run(run_id, connection, env)
    print(
        f"run {run_id}: {status['status']} ({status.get('status-details')}), "
        f"{float(status.get('elapsed', 0.0)):.1f} s",
        flush=True,
    )
    return 0 if status["status"] == FINISHED_COMPLETED else 1


def main(argv: list[str] | None = None) -> int:  # noqa: C901 -- one branch per subcommand
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    env = flwr_env()
    if args.command == "certs":
        files = generate_tls(args.out, ("localhost", "127.0.0.1", *args.host))
        print(
            f"CA: {files.ca_cert}\ncert: {files.server_cert}\nkey: {files.server_key}"
        )
    elif args.command == "node-key":
        keys = generate_node_key(args.out, args.name)
        print(f"private: {keys.private_key}\npublic: {keys.public_key}")
    elif args.command == "superlink":
        tls = None
        if args.tls_dir is not None:
            tls = TlsFiles(
                args.tls_dir / "ca.crt",
                args.tls_dir / "server.pem",
                args.tls_dir / "server.key",
            )
        proc = start_process(
            "superlink",
            superlink_command(
                args.port,
                host=args.host,
                tls=tls,
                supernode_auth=args.auth,
                database=args.workdir.absolute() / "superlink.db",
            ),
            args.workdir,
            env,
        )
        wait_for_port(
            args.port, proc, host="127.0.0.1" if args.host == "0.0.0.0" else args.host
        )
        if args.connection:
            add_connection(
                env,
                args.connection,
                f"127.0.0.1:{args.port}",
                root_certificates=tls.ca_cert if tls else None,
            )
        print(
            f"SuperLink PID {proc.pid} on {args.host}:{args.port}; log {proc.log_path}"
        )
    elif args.command == "register":
        cmd = ["supernode", "register", str(args.public_key), args.connection]
        print(flwr(cmd + (["--name", args.name] if args.name else []), env).stdout)
    elif args.command == "supernode":
        node_config: dict[str, int | float | str] = {
            "partition-id": args.partition_id,
            "num-partitions": args.num_partitions,
        }
        if args.data_dir:
            node_config["data-dir"] = args.data_dir
        if args.cameras:
            node_config["cameras"] = args.cameras
        proc = start_process(
            args.name or f"supernode{args.partition_id}",
            supernode_command(
                args.superlink,
                args.port,
                node_config,
                root_certificates=args.ca,
                auth_private_key=args.auth_key,
            ),
            args.workdir,
            env,
        )
        print(
            f"SuperNode PID {proc.pid} (partition {args.partition_id}), {proc.log_path}"
        )
    elif args.command == "local":
        fed = start_local_federation(
            args.workdir.absolute(),
            env,
            num_supernodes=args.num_supernodes,
            tls=args.tls,
            supernode_auth=args.auth,
        )
        print(
            f"SuperLink {fed.superlink_address}, connection '{fed.connection}', PIDs "
            f"{[p.pid for p in fed.processes]}\n"
            f"next: flwr run . {fed.connection} --stream"
            f"\nstop: python -m edgecloud.deploy stop --workdir {args.workdir}"
        )
    elif args.command == "run":
        return _submit_and_check(args.app, args.connection, args.run_config, env)
    elif args.command == "simulate":
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
        return _submit_and_check(args.app, "local", args.run_config, env)
    elif args.command == "stop":
        if args.workdir is not None:
            print(f"stopped PIDs {stop_processes(args.workdir)}")
        if args.local_superlink:
            print(f"stopped local SuperLink PIDs {stop_local_superlinks()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
