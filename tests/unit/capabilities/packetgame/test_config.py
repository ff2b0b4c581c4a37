"""The packetgame section: every bad value names the key, the value and the rule."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edgecloud.capabilities.packetgame.config import PacketGameConfig
from edgecloud.capability import load_run_settings
from edgecloud.exceptions import ConfigError
from edgecloud.settings import load_client_settings


def test_the_defaults_on_a_generated_testbed_load(
    packetgame_config: dict[str, Any], fake_testbed: Path
) -> None:
    # Execute
    settings = load_run_settings(packetgame_config)

    # Assert
    config = settings.section
    assert isinstance(config, PacketGameConfig)
    assert config.testbed_path() == fake_testbed
    assert config.size == (160, 120)
    assert config.predictor_path() is None


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        # only the two modes exist
        ("mode", "infer", "expected one of: train, analytics"),
        # a budget of nothing decodes nothing
        ("budget", 0.0, "expected a number in (0, 1]"),
        # more than decoding everything is not a saving
        ("budget", 1.5, "expected a number in (0, 1]"),
        # the gate needs at least one packet of history
        ("window", 0, "expected an integer in [1, inf]"),
        # a quoted number is a string: types are strict
        ("budget", "0.3", "expected a number"),
        # redundancy rules are the library's two
        ("redundancy", "changed", "expected one of: count-changed, event-present"),
        # policies are the library's names
        ("policy", "greedy", "expected one of: decode-all, random"),
        # the model input size reads WIDTHxHEIGHT
        ("frame-size", "160", "expected WIDTHxHEIGHT"),
        # a black box the testbed does not have lists the ones it has
        ("model", "no-such-model", "expected a black box under"),
        # the sequence reader outputs 8 slots per frame, not one class
        ("model", "sequence-reader", "one class index per frame"),
        # a directory that is no testbed names the generator
        ("testbed", "/no/such/testbed", "python -m edgecloud.data.testbed generate"),
        # a predictor file that does not exist
        ("predictor", "/no/such/predictor.pt", "which is not a file"),
    ],
)
def test_bad_values_name_key_value_and_expectation(
    packetgame_config: dict[str, Any], key: str, value: Any, expected: str
) -> None:
    # Prepare
    config = {**packetgame_config, f"packetgame.{key}": value}

    # Execute
    with pytest.raises(ConfigError) as info:
        load_run_settings(config)

    # Assert
    message = str(info.value)
    assert f"'packetgame.{key}' has value {value!r}" in message
    assert expected in message


@pytest.mark.parametrize("policy", ["packetgame", "packetgame-thesis", "contextual"])
def test_analytics_with_a_learnt_policy_needs_a_predictor_file(
    packetgame_config: dict[str, Any], policy: str
) -> None:
    # Prepare: no predictor file: the gate would run an untrained network
    config = {
        **packetgame_config,
        "packetgame.mode": "analytics",
        "packetgame.policy": policy,
        "packetgame.predictor": "",
    }

    # Execute / Assert
    with pytest.raises(ConfigError, match=r"'packetgame\.predictor' is empty"):
        load_run_settings(config)
    config["packetgame.policy"] = "temporal"  # no predictor needed
    assert load_run_settings(config).section.predictor_path() is None  # type: ignore[attr-defined]


def test_a_relative_testbed_resolves_against_the_working_directory(
    packetgame_config: dict[str, Any],
    fake_testbed: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare
    monkeypatch.chdir(fake_testbed.parent)
    config = {**packetgame_config, "packetgame.testbed": "elsewhere"}

    # Execute / Assert: the error shows where it looked; the right name loads
    with pytest.raises(ConfigError, match=re.escape(str(fake_testbed.parent))):
        load_run_settings(config)
    config["packetgame.testbed"] = fake_testbed.name
    assert load_run_settings(config).section.testbed_path() == fake_testbed  # type: ignore[attr-defined]


def test_a_node_may_override_the_testbed_but_not_the_budget(
    packetgame_config: dict[str, Any], fake_testbed: Path
) -> None:
    # Prepare
    node = {"partition-id": 0, "num-partitions": 1}

    # Execute
    settings = load_client_settings(
        packetgame_config,
        {**node, "packetgame.testbed": "/node/testbed"},
        PacketGameConfig,
    )

    # Assert
    assert settings.section.testbed == "/node/testbed"
    with pytest.raises(
        ConfigError, match=re.escape("'packetgame.budget' is a run-wide")
    ):
        load_client_settings(
            packetgame_config, {**node, "packetgame.budget": 0.5}, PacketGameConfig
        )


def test_the_keys_clients_act_on_are_marked() -> None:
    # Execute
    client = {k for k, m in PacketGameConfig.keys().items() if m.client}

    # Assert: the server alone picks the mode and loads the predictor file
    assert "packetgame.mode" not in client and "packetgame.predictor" not in client
    assert {"packetgame.testbed", "packetgame.budget", "packetgame.window"} <= client
