"""The packetgame run config on a testbed-shaped directory (``fake_testbed``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def packetgame_config(
    run_config: dict[str, Any], fake_testbed: Path, tmp_path: Path
) -> dict[str, Any]:
    """The defaults with capability packetgame on the fake testbed."""
    return {
        **run_config,
        "capability": "packetgame",
        "packetgame.testbed": str(fake_testbed),
        "packetgame.model": "person-counter",
        "output-dir": str(tmp_path / "out"),
    }
