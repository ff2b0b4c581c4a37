"""The infi section: every bad value names the key, the value and the rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgecloud.capabilities.infi.config import InfiConfig
from edgecloud.capability import load_run_settings
from edgecloud.exceptions import ConfigError
from edgecloud.settings import load_client_settings


def test_the_defaults_on_a_testbed_with_the_black_box_load(
    infi_config: dict[str, Any], fake_testbed: Path
) -> None:
    # Execute
    settings = load_run_settings(infi_config)

    # Assert
    config = settings.section
    assert isinstance(config, InfiConfig)
    assert config.mode == "federated"
    assert config.testbed_path() == fake_testbed
    assert config.black_box == "person-counter"
    assert config.size == (80, 60)
    assert (config.train_fraction, config.target_accuracy) == (0.5, 0.9)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        # only the two modes exist
        ("mode", "both", "expected one of: federated, local"),
        # tasks are those with a black box in the testbed's models
        ("task", "faces", "expected one of: person-count, vehicle-count, event"),
        # a target of 1 leaves no room to skip a useful input: open interval
        ("target-accuracy", 1.0, "expected a number in (0, 1)"),
        # a target of 0 accepts any filter
        ("target-accuracy", 0.0, "expected a number in (0, 1)"),
        # training on every frame leaves nothing to test on
        ("train-fraction", 1.0, "expected a number in (0, 1)"),
        # no validation frames: no threshold can be chosen
        ("validation-fraction", 0.0, "expected a number in (0, 1)"),
        # a round must train
        ("local-epochs", 0, "expected an integer in [1, inf]"),
        # stride 0 keeps no frame
        ("frame-stride", 0, "expected an integer in [1, inf]"),
        # RMSprop needs a positive step
        ("lr", -0.001, "expected a number in (0, inf]"),
        # a quoted number is a string: types are strict
        ("target-accuracy", "0.9", "expected a number"),
        # the filter input size reads WIDTHxHEIGHT
        ("frame-size", "80", "expected WIDTHxHEIGHT"),
        # the fake testbed has no vehicle counter: the error lists what it has
        ("task", "vehicle-count", "person-counter, sequence-reader"),
        # a directory that is no testbed names the generator
        ("testbed", "/no/such/testbed", "python -m edgecloud.data.testbed generate"),
    ],
)
def test_bad_values_name_key_value_and_expectation(
    infi_config: dict[str, Any], key: str, value: Any, expected: str
) -> None:
    # Prepare
    config = {**infi_config, f"infi.{key}": value}

    # Execute
    with pytest.raises(ConfigError) as info:
        load_run_settings(config)

    # Assert
    message = str(info.value)
    assert f"'infi.{key}' has value {value!r}" in message
    assert expected in message


def test_an_unknown_infi_key_fails_before_round_one(
    infi_config: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError, match=r"unknown run-config key\(s\) \['infi.k'\]"):
        load_run_settings({**infi_config, "infi.k": 3})


def test_a_node_may_override_only_the_testbed(
    infi_config: dict[str, Any], fake_testbed: Path
) -> None:
    # Prepare: the run config's testbed does not exist on this node
    run_config = {**infi_config, "infi.testbed": "/elsewhere"}
    node = {"partition-id": 0, "num-partitions": 1, "infi.testbed": str(fake_testbed)}

    # Execute
    settings = load_client_settings(run_config, node, InfiConfig)

    # Assert: its own testbed; the task is the run's and may not be overridden
    assert settings.section.testbed_path("node config") == fake_testbed
    with pytest.raises(ConfigError, match=r"'infi\.task'"):
        load_client_settings(run_config, {**node, "infi.task": "event"}, InfiConfig)
