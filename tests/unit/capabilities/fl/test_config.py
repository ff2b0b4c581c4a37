"""The FL section: cross-key checks and what clients act on."""

from __future__ import annotations

import re
from typing import Any

import pytest

from edgecloud.capabilities.fl.config import FlConfig
from edgecloud.capability import load_run_settings
from edgecloud.exceptions import ConfigError


def _fl(run_config: dict[str, Any], **changes: Any) -> FlConfig:
    section = load_run_settings({**run_config, **changes}).section
    assert isinstance(section, FlConfig)
    return section


def test_dp_and_quantization_cannot_be_combined(run_config: dict[str, Any]) -> None:
    changes = {"fl.dp-mode": "server-fixed", "fl.update-quantization-bits": 8}
    with pytest.raises(ConfigError, match="cannot be combined"):
        _fl(run_config, **changes)


def test_multikrum_must_select_someone(run_config: dict[str, Any]) -> None:
    changes = {"fl.strategy": "multikrum", "fl.num-nodes-to-select": 0}
    with pytest.raises(
        ConfigError, match=re.escape("'fl.num-nodes-to-select' has value 0")
    ):
        _fl(run_config, **changes)


def test_dp_sampled_clients_auto_and_explicit(run_config: dict[str, Any]) -> None:
    # Prepare
    auto = _fl(run_config)
    explicit = _fl(run_config, **{"fl.dp-num-sampled-clients": 3})

    # Assert: auto follows Flower's sampling (int(n * fraction), at least 1)
    assert auto.dp_sampled_clients(0.5, 10) == 5
    assert auto.dp_sampled_clients(0.5, 1) == 1
    assert explicit.dp_sampled_clients(0.5, 10) == 3


@pytest.mark.parametrize(
    ("mode", "client_mode", "local_keys"),
    [
        # server-side DP needs nothing from the clients
        ("server-fixed", "none", False),
        ("server-adaptive", "none", False),
        # client-side clipping runs a mod on the client
        ("client-fixed", "client-fixed", False),
        # local DP clips and noises on the client with its own parameters
        ("local", "local", True),
    ],
)
def test_client_view_is_what_clients_act_on(
    run_config: dict[str, Any], mode: str, client_mode: str, local_keys: bool
) -> None:
    # Execute
    view = FlConfig.client_view({**run_config, "fl.dp-mode": mode})

    # Assert
    assert view["fl.dp-mode"] == client_mode
    assert view["fl.lr"] == run_config["fl.lr"]
    assert ("fl.dp-epsilon" in view) is local_keys
    assert "fl.strategy" not in view and "fl.proximal-mu" not in view
