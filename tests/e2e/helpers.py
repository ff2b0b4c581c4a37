"""Helpers for end-to-end tests: read a run's outputs, run on a local federation."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgecloud.data.partitioning import PartitionSpec
from edgecloud.deploy.federation import LocalFederation, start_local_federation
from edgecloud.deploy.flwr_cli import flwr_env, submit_run, wait_for_run
from edgecloud.deploy.processes import _alive
from edgecloud.local_simulation import PROJECT_DIR
from edgecloud.tasks import get_task
from edgecloud.tasks.split_steps import batch_schedule
from edgecloud.workflow.seeds import client_round_seed


def read_outputs(output_dir: Path, checkpoints: bool = True) -> dict[str, Any]:
    """Parse results.json and metrics.csv and check the PNG (and checkpoints) exist."""
    results = json.loads((output_dir / "results.json").read_text())
    with (output_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(results["rounds"])
    assert (output_dir / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    if checkpoints:
        saved = sorted((output_dir / "checkpoints").glob("round-*.pt"))
        assert len(saved) == results["completed_rounds"]  # one per round
    return dict(results)


@contextmanager
def local_federation(workdir: Path, **federation: Any) -> Iterator[LocalFederation]:
    """A SuperLink + SuperNodes on 127.0.0.1 for several runs; stopped by PID.

    ``federation`` goes to :func:`start_local_federation` (``num_supernodes``,
    ``tls``, ``supernode_auth``, ``per_node_config``). On exit every started
    process is stopped by its PID, and none may be left alive.
    """
    env = flwr_env(workdir / "flwr_home")
    started = start_local_federation(workdir / "deploy", env, **federation)
    pids = [p.pid for p in started.processes]
    try:
        yield started
    finally:
        stopped = started.stop()
        assert set(pids) <= set(stopped), (pids, stopped)
        assert not any(_alive(pid) for pid in pids)


def federation_env(federation: LocalFederation) -> dict[str, str]:
    """The flwr environment (FLWR_HOME with the connection) of a local federation."""
    return flwr_env(federation.workdir.parent / "flwr_home")


def run_on(
    federation: LocalFederation,
    run_config: str,
    timeout: float = 600,
    app_dir: Path = PROJECT_DIR,
) -> dict[str, Any]:
    """Submit the app (this one by default) to ``federation``; wait for its status."""
    env = federation_env(federation)
    run_id = submit_run(app_dir, federation.connection, env, run_config)
    return wait_for_run(
        run_id, federation.connection, env, timeout=timeout, stream_logs=False
    )


class CapturingProxy:
    """A TCP proxy on ``listen`` -> ``target`` that keeps every byte it relays.

    Stands between the SuperNodes and the stream endpoint to show what a network
    observer sees (both directions, all connections).
    """

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.target = target
        self.captured = bytearray()
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(listen)
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                incoming, _ = self._server.accept()
            except OSError:
                return  # closed
            outgoing = socket.create_connection(self.target)
            with self._lock:
                self.connections += 1
            for a, b in ((incoming, outgoing), (outgoing, incoming)):
                thread = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    self.captured += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop accepting; relaying threads end with their connections."""
        self._server.close()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc, Linux)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                kids = [int(c) for c in children.read_text().split()]
                found += kids
                queue += kids
    return found


def has_connection_to(pid: int, port: int) -> bool:
    """Whether ``pid`` holds an established TCP connection to ``port`` (Linux)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if fields[3] == "01" and remote_port == port and fields[9] in inodes:
                    return True
    return False


def first_activations(config: dict[str, Any], partition: int, partitions: int) -> bytes:
    """The plaintext smashed data a split client sends first (recomputed here).

    ``config`` is the run's full config; the digits partition is IID over
    ``partitions`` clients, as in the e2e runs.
    """
    import torch

    task = get_task(config["task"])
    torch.manual_seed(config["seed"])
    model = task.build_model()
    data = task.load_client_data(
        "digits",
        PartitionSpec("iid", partitions, config["seed"]),
        partition,
        Path("."),
        False,
    ).train
    rows = batch_schedule(
        len(data),
        config["batch-size"],
        config["local-epochs"],
        client_round_seed(config["seed"], 1, partition),
    )[0]
    with torch.no_grad():
        x = task.preprocess(torch.from_numpy(data.features[rows]))
        return bytes(model.front(x).numpy().tobytes())
