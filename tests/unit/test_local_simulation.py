"""Comparisons in one simulation: what may differ between runs is checked up front."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from edgecloud.capability import client_view
from edgecloud.exceptions import ConfigError
from edgecloud.local_simulation import make_run_config, run_local_simulations


@pytest.mark.parametrize(
    "override",
    [
        # regression: split.lr was missing from a hand-kept list, so a comparison
        # varying it trained device and server parts with different rates
        {"split.lr": 0.05},
        # every STIP key the data owners read
        {"stip.prompt": "9,9"},
        {"stip.max-new-tokens": 3},
        {"stip.user-bundle": "/other/user"},
        # common keys the clients read
        {"batch-size": 7},
        {"task": "cifar10-cnn"},
        # local DP clips on the clients
        {"fl.dp-mode": "local"},
    ],
)
def test_a_run_may_not_change_what_clients_read(override: dict[str, Any]) -> None:
    # Execute / Assert: refused before the engine starts
    started = time.perf_counter()
    with pytest.raises(ValueError, match="changes client-side key") as info:
        run_local_simulations({"varied": override}, shared={"capability": "split"})
    assert next(iter(override)) in str(info.value)
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize(
    "override",
    [
        # server-side choices: the mode, the strategy, the channel, sampling
        {"split.mode": "splitfed-v2"},
        {"split.channel-codec": "int8", "split.channel-encryption": False},
        {"fl.strategy": "fedprox", "fl.proximal-mu": 0.1},
        {"capability": "split", "fraction-train": 0.5},
        # server-side DP needs nothing from the clients
        {"fl.dp-mode": "server-fixed"},
        {"num-server-rounds": 3, "output-dir": "elsewhere"},
    ],
)
def test_server_side_keys_may_differ(override: dict[str, Any]) -> None:
    base = make_run_config()
    assert client_view(make_run_config(override)) == client_view(base)


def test_a_bad_run_fails_before_the_engine_starts() -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=re.escape("'fl.lr' has value -1.0")):
        run_local_simulations({"bad": {"fl.lr": -1.0}})
    assert time.perf_counter() - started < 5.0


def test_unknown_keys_fail_like_flwr_run() -> None:
    with pytest.raises(KeyError, match=re.escape("split.learning-rate")):
        make_run_config({"split.learning-rate": 0.1})
