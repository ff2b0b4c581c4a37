"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecloud.deploy.flwr_cli import flwr_env
from edgecloud.deploy.local_superlink import local_superlink_pids, stop_local_superlinks
from edgecloud.deploy.processes import free_port


@pytest.fixture
def local_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private FLWR_HOME and local-SuperLink port; the SuperLink is stopped by PID."""
    port = free_port()
    env = flwr_env(
        tmp_path / "flwr_home",
        {"FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(port)},
    )
    try:
        yield env
    finally:
        stop_local_superlinks(port)
        assert not local_superlink_pids(port)
