"""start_local_federation raises instead of returning a dead federation, and stops it.

The SuperLink and SuperNodes are fakes printing flwr 1.41's log lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from edgecloud.deploy import federation
from edgecloud.deploy.flwr_cli import flwr_env
from edgecloud.deploy.processes import StartupError, is_alive
from tests.unit.deploy.fake_flwr import (
    SUPERLINK_UP,
    SUPERNODE_PORT_TAKEN,
    SUPERNODE_REFUSED,
    SUPERNODE_UP,
    fake,
)


def _fake_nodes(monkeypatch: pytest.MonkeyPatch, logs: list[str]) -> None:
    """Fake SuperLink (serving) and SuperNodes: node i prints ``logs[i]``.

    A connected node keeps running; any other exits, as flwr's does.
    """

    def superlink(*args: Any, **kwargs: Any) -> list[str]:
        return fake(SUPERLINK_UP, then_sleep=60)

    def supernode(
        address: str, port: int, node_config: Mapping[str, Any], **kwargs: Any
    ) -> list[str]:
        log = logs[int(node_config["partition-id"])]
        return fake(log, then_sleep=60 if log == SUPERNODE_UP else 0)

    monkeypatch.setattr(federation, "superlink_command", superlink)
    monkeypatch.setattr(federation, "supernode_command", supernode)


@pytest.mark.parametrize(
    ("logs", "problem"),
    [
        # the second SuperNode could not bind its Runtime API port
        ([SUPERNODE_UP, SUPERNODE_PORT_TAKEN], "address already in use"),
        # the second SuperNode was refused by the SuperLink
        ([SUPERNODE_UP, SUPERNODE_REFUSED], "refused to activate supernode1"),
    ],
    ids=["port-taken", "refused"],
)
def test_a_failed_supernode_raises_and_everything_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: list[str], problem: str
) -> None:
    # Prepare
    _fake_nodes(monkeypatch, logs)
    recorded: list[int] = []
    real_start = federation.start_process

    def start_and_record(*args: Any, **kwargs: Any) -> Any:
        process = real_start(*args, **kwargs)
        recorded.append(process.pid)
        return process

    monkeypatch.setattr(federation, "start_process", start_and_record)

    # Execute
    with pytest.raises(StartupError) as raised:
        federation.start_local_federation(
            tmp_path / "deploy", flwr_env(tmp_path / "flwr_home"), startup_timeout=20
        )

    # Assert
    assert "supernode1" in str(raised.value) and problem in str(raised.value)
    assert str(raised.value).endswith(f"log {tmp_path / 'deploy' / 'supernode1.log'}")
    assert len(recorded) == 3 and not any(is_alive(pid) for pid in recorded)
    assert not list((tmp_path / "deploy").glob("*.pid"))


def test_it_returns_once_every_supernode_is_connected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _fake_nodes(monkeypatch, [SUPERNODE_UP, SUPERNODE_UP])

    # Execute
    fed = federation.start_local_federation(
        tmp_path / "deploy", flwr_env(tmp_path / "flwr_home"), startup_timeout=20
    )
    alive = [is_alive(p.pid) for p in fed.processes]
    stopped = fed.stop()

    # Assert
    assert alive == [True, True, True]
    assert sorted(stopped) == sorted(p.pid for p in fed.processes)
