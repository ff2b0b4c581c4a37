"""Run settings: common keys, capability sections, node config; clear errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edgecloud.capability import CAPABILITIES, load_run_settings, sections
from edgecloud.exceptions import ConfigError
from edgecloud.settings import (
    CommonSettings,
    NodeConfig,
    load_client_settings,
    load_settings,
)


def test_pyproject_defaults_are_valid_and_round_trip(
    run_config: dict[str, Any],
) -> None:
    # Execute
    settings = load_run_settings(run_config)

    # Assert: the default run is FedAvg on digits; the flat form round-trips
    assert settings.common.capability == "fl"
    assert settings.common.resolved_dataset == "digits"
    flat = settings.to_run_config()
    assert flat == {k: v for k, v in run_config.items() if k in flat}
    assert {k for k in run_config if "." not in k or k.startswith("fl.")} == set(flat)


@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
def test_each_section_validates_alone(
    run_config: dict[str, Any], capability: str, server_bundle: str, fake_testbed: Path
) -> None:
    # Prepare: only the common keys and this capability's own table
    own = {
        k: v
        for k, v in run_config.items()
        if "." not in k or k.startswith(f"{capability}.")
    }
    own["capability"] = capability
    if capability == "stip":
        own["stip.server-bundle"] = server_bundle  # no default bundle exists
    if capability == "packetgame":  # nor a generated default testbed
        own["packetgame.testbed"] = str(fake_testbed)
        own["packetgame.model"] = "person-counter"
    if capability == "infi":
        own["infi.testbed"] = str(fake_testbed)
        own["infi.task"] = "person-count"  # the black box the fake testbed has

    # Execute
    settings = load_settings(own, sections())

    # Assert
    assert type(settings.section) is CAPABILITIES[capability].section


@pytest.mark.parametrize(
    ("key", "value", "expected_in_message"),
    [
        # unknown names list the allowed values
        ("capability", "mlink", "fl, split, stip"),
        ("fl.strategy", "fedsgd", "fedavg, fedavgm"),
        ("task", "mnist-mlp", "digits-cnn"),
        ("partitioning", "pathological", "iid, dirichlet, shards"),
        ("fl.dp-mode", "on", "server-fixed"),
        # a dataset the task does not support
        ("dataset", "cifar10", "auto, digits"),
        # out of range numbers state the interval
        ("dirichlet-alpha", 0.0, "(0, inf]"),
        ("num-server-rounds", 0, "[1, inf]"),
        ("fraction-train", 1.5, "(0, 1]"),
        ("fraction-train", 0.0, "(0, 1]"),
        ("fl.lr", -0.1, "(0, inf]"),
        ("momentum", 1.0, "[0, 1)"),
        ("fl.trimmed-beta", 0.5, "[0, 0.5)"),
        ("fl.dp-delta", 1.0, "(0, 1)"),
        ("fl.update-quantization-bits", 4, "0, 8, 16"),
        # wrong types name the expected type
        ("num-server-rounds", 2.5, "expected an int, got a float"),
        ("resume", "yes", "expected a bool"),
        ("task", 3, "TOML strings need quotes"),
        ("fl.lr", True, "expected a number, got a bool"),
        ("fl.lr", float("nan"), "a number in"),
        ("output-dir", "  ", "expected a non-empty string"),
    ],
)
def test_invalid_values_are_rejected_with_key_value_and_expectation(
    run_config: dict[str, Any], key: str, value: Any, expected_in_message: str
) -> None:
    # Prepare
    run_config[key] = value

    # Execute / Assert
    with pytest.raises(ConfigError) as info:
        load_run_settings(run_config)
    message = str(info.value)
    assert f"'{key}'" in message
    assert repr(value) in message
    assert expected_in_message in message


@pytest.mark.parametrize(
    ("capability", "key", "value", "expected_in_message"),
    [
        # split learning's channel and schedule
        ("split", "split.channel-codec", "zstd", "fp32, fp16, bf16, int8"),
        ("split", "split.sync-interval", 0, "[1, inf]"),
        ("split", "split.lr", 0.0, "(0, inf]"),
        ("split", "split.channel-encryption", 1, "expected a bool"),
        ("split", "split.mode", "splitfed-v3", "splitfed-v1, splitfed-v2"),
        # STIP's generation settings
        ("stip", "stip.sampling", "beam", "greedy, sample"),
        ("stip", "stip.max-new-tokens", 0, "[1, inf]"),
        ("stip", "stip.top-k", -1, "[0, inf]"),
    ],
)
def test_only_the_chosen_section_is_validated(
    run_config: dict[str, Any],
    capability: str,
    key: str,
    value: Any,
    expected_in_message: str,
    server_bundle: str,
) -> None:
    # Prepare: the bad value sits in another capability's table
    run_config[key] = value
    run_config["stip.server-bundle"] = server_bundle

    # Execute / Assert: ignored while FL runs, refused once its capability runs
    load_run_settings(run_config)
    with pytest.raises(ConfigError) as info:
        load_run_settings({**run_config, "capability": capability})
    assert f"'{key}' has value {value!r}" in str(info.value)
    assert expected_in_message in str(info.value)


def test_unknown_and_missing_keys_are_rejected(run_config: dict[str, Any]) -> None:
    # Prepare
    with_unknown = {**run_config, "split.learning-rate": 0.1}
    without_lr = {k: v for k, v in run_config.items() if k != "fl.lr"}
    without_seed = {k: v for k, v in run_config.items() if k != "seed"}

    # Execute / Assert: unknown in any table fails, even a table not chosen
    with pytest.raises(ConfigError, match=r"unknown run-config key.*split.learning"):
        load_run_settings(with_unknown)
    with pytest.raises(ConfigError, match=r"\['fl.lr'\] missing.*config.fl\]"):
        load_run_settings(without_lr)
    with pytest.raises(ConfigError, match=r"\['seed'\] missing"):
        load_run_settings(without_seed)


def test_several_bad_values_are_all_named(run_config: dict[str, Any]) -> None:
    run_config.update({"fl.lr": 0.0, "fl.qffl-q": -1.0})
    with pytest.raises(ConfigError, match="2 invalid run-config values") as info:
        load_run_settings(run_config)
    assert "'fl.lr'" in str(info.value) and "'fl.qffl-q'" in str(info.value)


def test_ints_are_accepted_for_floats(run_config: dict[str, Any]) -> None:
    # Prepare: TOML `lr=1` arrives as an int
    run_config["fl.lr"] = 1

    # Execute
    settings = load_run_settings(run_config)

    # Assert
    assert settings.section.lr == 1.0 and isinstance(settings.section.lr, float)  # type: ignore[attr-defined]


def test_by_camera_partitioning_needs_a_task_with_cameras(
    run_config: dict[str, Any],
) -> None:
    # digits have no cameras: the error names the key, value and usable tasks
    with pytest.raises(ConfigError, match="'partitioning' has value 'by-camera'"):
        load_run_settings({**run_config, "partitioning": "by-camera"})
    settings = load_run_settings(
        {
            **run_config,
            "partitioning": "by-camera",
            "task": "testbed-vehicles",
            "dataset": "testbed-tiny",
        }
    )
    assert settings.common.partition_spec(2).method == "by-camera"


def test_resume_is_refused_for_a_capability_without_checkpoints(
    run_config: dict[str, Any], server_bundle: str
) -> None:
    run_config.update(
        {"capability": "stip", "stip.server-bundle": server_bundle, "resume": True}
    )
    with pytest.raises(ConfigError, match=r"'resume' has value true.*'stip'"):
        load_run_settings(run_config)


def test_resumable_keys_come_from_field_metadata(run_config: dict[str, Any]) -> None:
    resumable = load_run_settings(run_config).resumable_keys()
    assert resumable == {
        "num-server-rounds",
        "resume",
        "output-dir",
        "round-timeout",
        "data-dir",
        "data-download",
        "min-available-nodes",
    }


# ------------------------------------------------------------------ client side
def test_client_settings_are_parsed_once_per_run_config(
    run_config: dict[str, Any],
) -> None:
    # Prepare
    node = {"partition-id": 0, "num-partitions": 2}
    fl_section = CAPABILITIES["fl"].section

    # Execute
    first = load_client_settings(run_config, node, fl_section)
    again = load_client_settings(dict(run_config), dict(node), fl_section)
    other = load_client_settings({**run_config, "fl.lr": 0.1}, node, fl_section)

    # Assert: the same object for the same configs, a new one for another run
    assert again is first
    assert other is not first and other.section.lr == 0.1  # type: ignore[attr-defined]


def test_a_node_overrides_only_node_level_keys(run_config: dict[str, Any]) -> None:
    # Prepare
    node = {"partition-id": 0, "num-partitions": 1, "data-dir": "/srv/data"}
    split_section = CAPABILITIES["split"].section

    # Execute
    settings = load_client_settings(run_config, node, split_section)

    # Assert: data-dir is node-level; split.lr is run-wide
    assert str(settings.common.data_path) == "/srv/data"
    with pytest.raises(
        ConfigError, match=re.escape("'split.lr' is a run-wide setting")
    ):
        load_client_settings(run_config, {**node, "split.lr": 0.5}, split_section)
    with pytest.raises(ConfigError, match="node config key 'data-dir' has value 5"):
        load_client_settings(run_config, {**node, "data-dir": 5}, split_section)


def test_common_settings_expose_paths(run_config: dict[str, Any]) -> None:
    common = load_run_settings(run_config).common
    assert isinstance(common, CommonSettings)
    assert common.output_path.is_absolute()
    assert "~" not in str(common.data_path)


@pytest.mark.parametrize(
    ("node_config", "message"),
    [
        # deployment without --node-config
        ({}, "'partition-id' is missing"),
        # partition outside the range
        (
            {"partition-id": 2, "num-partitions": 2},
            "0 <= partition-id < num-partitions",
        ),
        # a string where an integer is needed
        ({"partition-id": "0", "num-partitions": 2}, "expected an integer"),
        # camera ids that are not integers
        ({"partition-id": 0, "num-partitions": 2, "cameras": "0,a"}, "'cameras'"),
        # a camera listed twice
        ({"partition-id": 0, "num-partitions": 2, "cameras": "1,1"}, "no duplicates"),
        # negative camera id
        ({"partition-id": 0, "num-partitions": 2, "cameras": -1}, "non-negative"),
        # an empty list
        ({"partition-id": 0, "num-partitions": 2, "cameras": ""}, "at least one"),
        # a float is not a camera id
        ({"partition-id": 0, "num-partitions": 2, "cameras": 1.5}, "camera ids"),
    ],
)
def test_node_config_errors(node_config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NodeConfig.from_node_config(node_config)


def test_node_cameras_parse_from_int_or_list() -> None:
    base = {"partition-id": 0, "num-partitions": 2}
    assert NodeConfig.from_node_config(base).cameras is None
    assert NodeConfig.from_node_config({**base, "cameras": 3}).cameras == (3,)
    assert NodeConfig.from_node_config({**base, "cameras": "2, 0"}).cameras == (2, 0)
