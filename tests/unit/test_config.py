"""RunConfig / NodeConfig validation: errors name key, value and expectation."""

from __future__ import annotations

from typing import Any

import pytest

from edgecloud.config import NodeConfig, RunConfig
from edgecloud.exceptions import ConfigError


def test_pyproject_defaults_are_valid(run_config: dict[str, Any]) -> None:
    # Execute
    cfg = RunConfig.from_run_config(run_config)

    # Assert
    assert cfg.strategy == "fedavg"
    assert cfg.resolved_dataset == "digits"
    assert cfg.to_run_config() == {
        k: (float(v) if isinstance(getattr(cfg, k.replace("-", "_")), float) else v)
        for k, v in run_config.items()
    }


@pytest.mark.parametrize(
    ("key", "value", "expected_in_message"),
    [
        # unknown names list the allowed values
        ("strategy", "fedsgd", "fedavg, fedavgm"),
        ("task", "mnist-mlp", "digits-cnn"),
        ("partitioning", "pathological", "iid, dirichlet, shards"),
        ("dp-mode", "on", "server-fixed"),
        # a dataset the task does not support
        ("dataset", "cifar10", "auto, digits"),
        # out of range numbers state the interval
        ("dirichlet-alpha", 0.0, "(0, inf]"),
        ("num-server-rounds", 0, "[1, inf]"),
        ("fraction-train", 1.5, "[0, 1]"),
        ("fraction-train", 0.0, "(0, 1]"),
        ("lr", -0.1, "(0, inf]"),
        ("momentum", 1.0, "[0, 1)"),
        ("trimmed-beta", 0.5, "[0, 0.5)"),
        ("dp-delta", 1.0, "(0, 1)"),
        ("update-quantization-bits", 4, "0, 8, 16"),
        # wrong types name the expected type
        ("num-server-rounds", 2.5, "expected a int"),
        ("resume", "yes", "expected a bool"),
        ("strategy", 3, "TOML strings need quotes"),
        ("lr", float("nan"), "a number in"),
        ("output-dir", "  ", "expected a directory path"),
        # split learning's channel and schedule
        ("channel-codec", "zstd", "fp32, fp16, bf16, int8"),
        ("split-sync-interval", 0, "[1, inf]"),
        ("split-lr", 0.0, "(0, inf]"),
        ("channel-encryption", 1, "expected a bool"),
    ],
)
def test_invalid_values_are_rejected_with_key_value_and_expectation(
    run_config: dict[str, Any], key: str, value: Any, expected_in_message: str
) -> None:
    # Prepare
    run_config[key] = value

    # Execute / Assert
    with pytest.raises(ConfigError) as info:
        RunConfig.from_run_config(run_config)
    message = str(info.value)
    assert f"'{key}'" in message
    assert repr(value) in message or str(value) in message
    assert expected_in_message in message


def test_unknown_and_missing_keys_are_rejected(run_config: dict[str, Any]) -> None:
    # Prepare
    with_unknown = {**run_config, "learning-rate": 0.1}
    without_lr = {k: v for k, v in run_config.items() if k != "lr"}

    # Execute / Assert
    with pytest.raises(ConfigError, match=r"unknown run-config key.*learning-rate"):
        RunConfig.from_run_config(with_unknown)
    with pytest.raises(ConfigError, match=r"\['lr'\] missing"):
        RunConfig.from_run_config(without_lr)


def test_ints_are_accepted_for_floats(run_config: dict[str, Any]) -> None:
    # Prepare: TOML `lr=1` arrives as an int
    run_config["lr"] = 1

    # Execute
    cfg = RunConfig.from_run_config(run_config)

    # Assert
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)


def test_dp_and_quantization_cannot_be_combined(run_config: dict[str, Any]) -> None:
    # Prepare
    run_config.update({"dp-mode": "server-fixed", "update-quantization-bits": 8})

    # Execute / Assert
    with pytest.raises(ConfigError, match="cannot be combined"):
        RunConfig.from_run_config(run_config)


def test_dp_sampled_clients_auto_and_explicit(run_config: dict[str, Any]) -> None:
    # Prepare
    auto = RunConfig.from_run_config({**run_config, "fraction-train": 0.5})
    explicit = auto.replace(dp_num_sampled_clients=3)

    # Assert: auto follows Flower's sampling (int(n * fraction), at least 1)
    assert auto.dp_sampled_clients(10) == 5
    assert auto.dp_sampled_clients(1) == 1
    assert explicit.dp_sampled_clients(10) == 3


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
        # data-dir not quoted in TOML parses as a number
        ({"partition-id": 0, "num-partitions": 2, "data-dir": 5}, "quoted path"),
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


def test_node_data_dir_overrides_run_config(run_config: dict[str, Any]) -> None:
    # Prepare
    cfg = RunConfig.from_run_config(run_config)
    node = NodeConfig.from_node_config(
        {"partition-id": 0, "num-partitions": 1, "data-dir": "/srv/data"}
    )

    # Assert
    assert str(node.data_path(cfg)) == "/srv/data"
    assert NodeConfig(0, 1).data_path(cfg) == cfg.data_path


def test_node_cameras_parse_from_int_or_list() -> None:
    base = {"partition-id": 0, "num-partitions": 2}
    assert NodeConfig.from_node_config(base).cameras is None
    assert NodeConfig.from_node_config({**base, "cameras": 3}).cameras == (3,)
    assert NodeConfig.from_node_config({**base, "cameras": "2, 0"}).cameras == (2, 0)


def test_by_camera_partitioning_needs_a_task_with_cameras(
    run_config: dict[str, Any],
) -> None:
    # digits have no cameras: the error names the key, value and usable tasks
    with pytest.raises(ConfigError, match="'partitioning' has value 'by-camera'"):
        RunConfig.from_run_config({**run_config, "partitioning": "by-camera"})
    cfg = RunConfig.from_run_config(
        {
            **run_config,
            "partitioning": "by-camera",
            "task": "testbed-vehicles",
            "dataset": "testbed-tiny",
        }
    )
    assert cfg.partition_spec(2).method == "by-camera"


def test_split_learning_refuses_dp_and_update_quantization(
    run_config: dict[str, Any],
) -> None:
    # Prepare
    run_config.update({"strategy": "splitfed-v1", "dp-mode": "server-fixed"})

    # Execute / Assert
    with pytest.raises(ConfigError, match="split learning does not combine"):
        RunConfig.from_run_config(run_config)


def test_secure_inference_needs_a_server_bundle_and_valid_sampling(
    run_config: dict[str, Any],
) -> None:
    # strategy=secure-inference without the developer tool's server/ directory
    with pytest.raises(ConfigError, match="'stip-server-bundle' has value ''"):
        RunConfig.from_run_config({**run_config, "strategy": "secure-inference"})
    # an unknown sampling mode names the allowed ones
    with pytest.raises(ConfigError, match="'stip-sampling' has value 'beam'"):
        RunConfig.from_run_config({**run_config, "stip-sampling": "beam"})
    # zero new tokens is not a generation
    with pytest.raises(ConfigError, match="'stip-max-new-tokens'"):
        RunConfig.from_run_config({**run_config, "stip-max-new-tokens": 0})
    cfg = RunConfig.from_run_config(
        {
            **run_config,
            "strategy": "secure-inference",
            "stip-server-bundle": "/b/server",
        }
    )
    assert cfg.stip_max_new_tokens == 32


def test_node_stip_overrides_must_be_strings() -> None:
    base = {"partition-id": 0, "num-partitions": 1}
    node = NodeConfig.from_node_config({**base, "stip-prompt": "hello"})
    assert node.stip_prompt == "hello" and node.stip_user_bundle is None
    with pytest.raises(ConfigError, match="'stip-user-bundle' has value 3"):
        NodeConfig.from_node_config({**base, "stip-user-bundle": 3})
