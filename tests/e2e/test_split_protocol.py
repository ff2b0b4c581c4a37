"""What the SuperLink relays for split learning: ciphertext only.

Encrypted and unencrypted (control) runs share one simulation: encryption is the
server's choice, the clients follow it. (Drops: test_failures_and_config.py; a
real TLS deployment: test_deployment.py.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from edgecloud.client_app import app as edgecloud_client_app
from edgecloud.local_simulation import _ConfiguredClientApp, make_run_config
from edgecloud.server_app import main as edgecloud_server_main
from tests.e2e.helpers import first_activations

pytestmark = pytest.mark.slow

FAST = {
    "capability": "split",
    "split.mode": "splitfed-v1",
    "local-epochs": 1,
    "batch-size": 64,
    "num-server-rounds": 1,
    # The Flower messages are what this file inspects (the stream: test_deployment.py)
    "split.transport": "messages",
}


class _RecordingGrid:
    """Keeps the raw bytes of every record value of every reply."""

    def __init__(self, grid: Grid, seen: list[bytes]) -> None:
        self._grid, self._seen = grid, seen

    def send_and_receive(self, messages: Iterable[Message], **kw: Any) -> list[Message]:
        replies = list(self._grid.send_and_receive(messages, **kw))
        for reply in replies:
            if not reply.has_error():
                for record in reply.content.values():
                    for value in record.values():
                        data = getattr(value, "data", value)
                        if isinstance(data, bytes):
                            self._seen.append(data)
        return replies

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


@pytest.fixture(scope="module")
def seen_by_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[bool, list[bytes]]:
    """Run splitfed-v1 once encrypted, once not; every reply's raw record bytes."""
    root = tmp_path_factory.mktemp("ciphertext")
    configs = {
        encrypted: make_run_config(
            {
                **FAST,
                "split.channel-encryption": encrypted,
                "output-dir": str(root / str(encrypted)),
            }
        )
        for encrypted in (True, False)
    }
    seen: dict[bool, list[bytes]] = {True: [], False: []}
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        for encrypted, config in configs.items():
            context.run_config = dict(config)
            edgecloud_server_main(_RecordingGrid(grid, seen[encrypted]), context)  # type: ignore[arg-type]

    run_simulation(
        server_app=server,
        client_app=_ConfiguredClientApp(edgecloud_client_app, configs[True]),
        num_supernodes=2,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    return seen


@pytest.mark.parametrize(
    "encrypted", [True, False], ids=["encrypted", "plaintext-control"]
)
def test_replies_hold_no_plaintext_activations(
    seen_by_server: dict[bool, list[bytes]], encrypted: bool
) -> None:
    # Prepare
    config = make_run_config(FAST)
    plaintext = [first_activations(config, p, 2) for p in (0, 1)]
    seen = seen_by_server[encrypted]

    # Assert: any 64-byte window of the activations would betray them
    windows = [a[i : i + 64] for a in plaintext for i in range(0, len(a) - 64, 997)]
    found = any(w in blob for w in windows for blob in seen)
    assert seen
    if encrypted:
        assert not found, "plaintext activations reached the server's replies"
    else:  # the control shows the check would catch plaintext
        assert found
