"""A SuperLink and N SuperNodes on one machine (loopback), insecure or TLS + auth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgecloud.deploy.certificates import TlsFiles, generate_node_key, generate_tls
from edgecloud.deploy.flwr_cli import add_connection, flwr
from edgecloud.deploy.processes import (
    SUPERLINK_SERVING,
    SUPERNODE_CONNECTED,
    ManagedProcess,
    free_port,
    refusal_message,
    start_process,
    stop_process,
    stop_processes,
    superlink_command,
    supernode_command,
    wait_until_started,
)


@dataclass
class LocalFederation:
    """What :func:`start_local_federation` started; ``stop()`` ends all of it."""

    workdir: Path
    connection: str
    superlink_address: str
    tls: TlsFiles | None
    processes: list[ManagedProcess] = field(default_factory=list)

    def stop(self) -> list[int]:
        """Stop every started process by its PID."""
        return stop_processes(self.workdir)


def start_local_federation(
    workdir: Path,
    env: Mapping[str, str],
    *,
    num_supernodes: int = 2,
    tls: bool = False,
    supernode_auth: bool = False,
    connection: str | None = None,
    extra_node_config: Mapping[str, int | float | str] | None = None,
    per_node_config: Sequence[Mapping[str, int | float | str]] | None = None,
    startup_timeout: float = 60.0,
) -> LocalFederation:
    """Start a SuperLink and ``num_supernodes`` SuperNodes on 127.0.0.1 (free ports).

    With ``tls``, certificates are generated in ``workdir/certs``; with
    ``supernode_auth`` (requires ``tls``) each SuperNode gets an ECDSA key that is
    registered with ``flwr supernode register`` before the node starts. Node ``i``
    gets ``--node-config "partition-id=i num-partitions=N"`` plus
    ``extra_node_config`` and ``per_node_config[i]`` (e.g. its own testbed
    ``cameras``). The connection is
    written to ``$FLWR_HOME/config.toml`` so ``flwr run . <connection>`` works.

    It returns once the SuperLink serves and every SuperNode is connected.

    Raises
    ------
    StartupError
        If a process exits, is refused or is not up within ``startup_timeout`` s;
        everything started is stopped by PID first.
    """
    if supernode_auth and not tls:
        raise ValueError("SuperNode authentication requires TLS (tls=True)")
    if per_node_config is not None and len(per_node_config) != num_supernodes:
        raise ValueError(
            f"per_node_config has {len(per_node_config)} entries; expected one per "
            f"SuperNode ({num_supernodes})"
        )
    name = connection or ("edgecloud-tls" if tls else "edgecloud-insecure")
    files = generate_tls(workdir / "certs") if tls else None
    port = free_port()
    address = f"127.0.0.1:{port}"
    federation = LocalFederation(workdir, name, address, files)
    try:
        superlink = start_process(
            "superlink",
            superlink_command(
                port,
                tls=files,
                supernode_auth=supernode_auth,
                database=workdir / "superlink.db",
            ),
            workdir,
            env,
        )
        federation.processes.append(superlink)
        wait_until_started(
            superlink,
            SUPERLINK_SERVING,
            timeout=startup_timeout,
            what=f"serving on {address}",
        )
        add_connection(
            env, name, address, root_certificates=files.ca_cert if files else None
        )
        for index in range(num_supernodes):
            key = None
            if supernode_auth:
                key = generate_node_key(workdir / "keys", f"node{index}")
                flwr(
                    [
                        "supernode",
                        "register",
                        str(key.public_key),
                        name,
                        "--name",
                        f"node{index}",
                    ],
                    env,
                )
            node_config = {
                "partition-id": index,
                "num-partitions": num_supernodes,
                **(extra_node_config or {}),
                **(per_node_config[index] if per_node_config else {}),
            }
            node = start_process(
                f"supernode{index}",
                supernode_command(
                    address,
                    free_port(),
                    node_config,
                    root_certificates=files.ca_cert if files else None,
                    auth_private_key=key.private_key if key else None,
                ),
                workdir,
                env,
            )
            federation.processes.append(node)
        # started together, checked together: each connects in about 2 s
        for node in federation.processes[1:]:
            wait_until_started(
                node,
                SUPERNODE_CONNECTED,
                timeout=startup_timeout,
                what=f"connected to {address}",
                refused=refusal_message(node.name, address),
            )
    except BaseException:
        # only what this call started: the workdir may hold other live processes
        for process in reversed(federation.processes):
            stop_process(process)
        raise
    return federation
