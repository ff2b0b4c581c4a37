"""A testbed-shaped directory (files only) and the packetgame run config on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def fake_testbed(tmp_path: Path) -> Path:
    """A manifest and two black boxes' metadata: enough for the server's checks."""
    root = tmp_path / "testbed"
    root.mkdir()
    (root / "manifest.json").write_text("{}")
    for name, slots in (("person-counter", 1), ("sequence-reader", 8)):
        model = root / "models" / name
        model.mkdir(parents=True)
        (model / "meta.json").write_text(json.dumps({"spec": {"slots": slots}}))
    return root


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
