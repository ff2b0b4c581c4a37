"""The STIP section and its bundle paths: validated before anything loads."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from edgecloud.capabilities.stip.config import resolve_bundle
from edgecloud.capability import load_run_settings
from edgecloud.exceptions import ConfigError


def test_the_server_checks_its_bundle_before_round_one(
    run_config: dict[str, Any], server_bundle: str
) -> None:
    # Prepare
    stip = {**run_config, "capability": "stip"}

    # Execute / Assert: none given, one that does not exist, a good one
    with pytest.raises(
        ConfigError, match=re.escape("'stip.server-bundle' has value ''")
    ):
        load_run_settings(stip)
    with pytest.raises(ConfigError, match="'/no/such/server', which is not a dir"):
        load_run_settings({**stip, "stip.server-bundle": "/no/such/server"})
    load_run_settings({**stip, "stip.server-bundle": server_bundle})


@pytest.fixture
def bundles(server_bundle: str) -> Path:
    """``server/`` (from the shared fixture) and ``user/`` side by side."""
    root = Path(server_bundle).parent
    user = root / "user"
    user.mkdir()
    (user / "config.json").write_text("{}")
    (user / "stip_user.safetensors").write_bytes(b"x")
    return root


def test_good_bundles_resolve_absolute_and_relative_to_the_working_directory(
    bundles: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(bundles)
    assert resolve_bundle("stip.server-bundle", "server", "server") == (
        bundles / "server"
    )
    assert resolve_bundle("stip.user-bundle", str(bundles / "user"), "user") == (
        bundles / "user"
    )


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        # a relative path that does not exist names where it was looked for
        ("nowhere/server", "server", "resolved to"),
        # a user bundle given as the server bundle lacks the model weights
        ("user", "server", "lacks model.safetensors"),
        # the server bundle given as a user bundle lacks the user's tensors
        ("server", "user", "lacks stip_user.safetensors"),
        # empty: names the developer tool
        ("", "user", "python -m edgecloud.stip.developer"),
    ],
)
def test_bad_bundles_name_key_value_and_expectation(
    bundles: Path, monkeypatch: pytest.MonkeyPatch, value: str, kind: str, message: str
) -> None:
    monkeypatch.chdir(bundles)
    with pytest.raises(ConfigError) as info:
        resolve_bundle(f"stip.{kind}-bundle", value, kind)
    assert f"'stip.{kind}-bundle' has value {value!r}" in str(info.value)
    assert message in str(info.value)
    assert os.getcwd() == str(bundles)
