"""The infi run config on a testbed-shaped directory, and the tiny real testbed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.capabilities.infi.tiny import one_torch_thread, tiny_infi_testbed


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny filters train faster on one thread (see ``one_torch_thread``)."""
    with one_torch_thread():
        yield


@pytest.fixture
def infi_config(
    run_config: dict[str, Any], fake_testbed: Path, tmp_path: Path
) -> dict[str, Any]:
    """The defaults with capability infi on the fake testbed (it has the counter)."""
    return {
        **run_config,
        "capability": "infi",
        "infi.testbed": str(fake_testbed),
        "infi.task": "person-count",
        "output-dir": str(tmp_path / "out"),
    }


@pytest.fixture(scope="session")
def infi_testbed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated tiny testbed with a trained person counter."""
    return tiny_infi_testbed(tmp_path_factory)
