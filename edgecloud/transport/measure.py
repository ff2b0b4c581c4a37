"""Loopback cost of the session stream: ping-pong round trips and connect time.

The benchmark target of issue 10 is "compute + measured loopback RTT of the
stream"; this measures that RTT the way the server's driver uses a session: the
server sends, the client answers, the server receives, with TLS on 127.0.0.1. The
client runs in a thread of this process or, as in a deployment, in a process of its
own (``python -m edgecloud.transport.measure`` is that echo client: it reads the
ticket as JSON on stdin).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from edgecloud.transport.client import SessionClient
from edgecloud.transport.server import ServerSession, SessionServer
from edgecloud.transport.ticket import KEY_CA_PEM, KEY_SERVER_PUBLIC, KEY_TOKEN, Ticket

_TIMEOUT = 30.0
_BYTES_KEYS = frozenset({KEY_TOKEN, KEY_SERVER_PUBLIC, KEY_CA_PEM})


@dataclass(frozen=True)
class Timing:
    """Summary of repeated measurements, in seconds."""

    n: int
    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Timing:
        """Median and 10th/90th percentiles of ``seconds`` (at least two values)."""
        deciles = statistics.quantiles(seconds, n=10, method="inclusive")
        return cls(len(seconds), statistics.median(seconds), deciles[0], deciles[-1])


def round_trips(
    payload_bytes: int, n: int, *, warmup: int = 10, client_process: bool = False
) -> Timing:
    """Round trips of ``payload_bytes`` each way over one TLS session on loopback.

    The server (driver) sends, the client echoes, the server receives: one sample.
    ``warmup`` exchanges first are not counted. With ``client_process`` the client
    is a separate Python process (as a deployed ClientApp is), else a thread here.
    """
    if n < 2 or warmup < 0 or payload_bytes < 0:
        raise ValueError(
            f"n={n}, warmup={warmup}, payload_bytes={payload_bytes}: expected "
            "n >= 2 and the others >= 0"
        )
    limit = max(payload_bytes, 1)
    with SessionServer(max_message_bytes=limit, max_sessions=1) as server:
        ticket, session = server.announce(run_id=1, node_id=1, ttl=60)
        if client_process:
            process = subprocess.Popen(
                [sys.executable, "-m", "edgecloud.transport.measure"],
                stdin=subprocess.PIPE,
            )
            try:
                assert process.stdin is not None
                process.stdin.write(_ticket_json(ticket, limit).encode())
                process.stdin.close()
                session.wait_connected(_TIMEOUT)
                samples = _ping_pong(session, payload_bytes, n, warmup)
                process.wait(_TIMEOUT)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        else:
            client = SessionClient(ticket, run_id=1, node_id=1, max_message_bytes=limit)
            try:
                client.connect()
                echo = threading.Thread(target=_echo, args=(client,), daemon=True)
                echo.start()
                samples = _ping_pong(session, payload_bytes, n, warmup)
                echo.join(_TIMEOUT)
            finally:
                client.close()
    return Timing.of(samples)


def _ping_pong(
    session: ServerSession, payload_bytes: int, n: int, warmup: int
) -> list[float]:
    payload = bytes(payload_bytes)
    samples = []
    for i in range(warmup + n):
        start = time.perf_counter()
        session.send(payload)
        reply = session.receive(_TIMEOUT)
        elapsed = time.perf_counter() - start
        assert len(reply) == payload_bytes  # an echo
        if i >= warmup:
            samples.append(elapsed)
    session.close()
    return samples


def connect_times(n: int) -> Timing:
    """Seconds ``SessionClient.connect()`` takes (TLS + hello + acceptance), n times.

    Every sample is a fresh session and TLS connection to one running endpoint.
    """
    if n < 2:
        raise ValueError(f"n={n}: expected n >= 2")
    samples = []
    with SessionServer() as server:
        for node_id in range(n):
            ticket, session = server.announce(run_id=1, node_id=node_id, ttl=60)
            with SessionClient(ticket, run_id=1, node_id=node_id) as client:
                start = time.perf_counter()
                client.connect()
                samples.append(time.perf_counter() - start)
            session.close()
    return Timing.of(samples)


def _echo(client: SessionClient) -> None:
    while (message := client.receive(_TIMEOUT)) is not None:
        client.send(message)


def _ticket_json(ticket: Ticket, max_message_bytes: int) -> str:
    values = {
        key: value.hex() if isinstance(value, bytes) else value
        for key, value in ticket.to_config().items()
    }
    return json.dumps({"ticket": values, "max-message-bytes": max_message_bytes})


def _echo_from_stdin() -> None:
    """The echo client of ``round_trips(client_process=True)``."""
    spec = json.loads(sys.stdin.read())
    values = {
        key: bytes.fromhex(value) if key in _BYTES_KEYS else value
        for key, value in spec["ticket"].items()
    }
    ticket = Ticket.from_config(values)
    with SessionClient(
        ticket, run_id=1, node_id=1, max_message_bytes=spec["max-message-bytes"]
    ) as client:
        client.connect()
        _echo(client)


if __name__ == "__main__":
    _echo_from_stdin()
