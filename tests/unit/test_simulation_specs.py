"""simulations/*.toml only override existing keys, with valid values."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from flwr.common.config import flatten_dict

from edgecloud.capability import load_run_settings
from edgecloud.local_simulation import PROJECT_DIR

SPECS = sorted((PROJECT_DIR / "simulations").glob("*.toml"))


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_spec_overrides_existing_keys_with_valid_values(
    spec: Path, run_config: dict[str, Any]
) -> None:
    # Prepare: flwr run --run-config <file>.toml flattens tables to dotted keys
    overrides = flatten_dict(tomllib.loads(spec.read_text()))

    # Assert
    assert set(overrides) <= set(run_config), set(overrides) - set(run_config)
    load_run_settings({**run_config, **overrides})


def test_there_are_specs() -> None:
    assert SPECS
