"""The split section: modes, the channel settings, tasks with a cut point."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from torch import nn

from edgecloud.capabilities.split.config import SplitConfig
from edgecloud.capability import load_run_settings
from edgecloud.channel import CODECS
from edgecloud.data.arrays import LabeledArrays
from edgecloud.exceptions import ConfigError
from edgecloud.tasks import TASKS, Task


class _NoCutPoint(Task):
    name: ClassVar[str] = "no-cut"
    datasets: ClassVar[tuple[str, ...]] = ("none",)

    def build_model(self) -> nn.Module:
        return nn.Linear(2, 2)

    def load_dataset(
        self, dataset: str, train: bool, data_dir: Path, download: bool
    ) -> LabeledArrays:
        raise NotImplementedError


def test_codecs_are_the_channels_codecs() -> None:
    assert SplitConfig.model_fields["channel_codec"].annotation.__args__ == CODECS  # type: ignore[union-attr]


def test_split_needs_a_task_with_a_cut_point(
    run_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    monkeypatch.setitem(TASKS, "no-cut", _NoCutPoint())
    changes = {"capability": "split", "task": "no-cut"}

    # Execute / Assert: FL trains it; split learning has nowhere to cut it
    load_run_settings({**run_config, "task": "no-cut"})
    with pytest.raises(ConfigError, match="task 'no-cut' declares no cut point"):
        load_run_settings({**run_config, **changes})


def test_mode_properties(run_config: dict[str, Any]) -> None:
    def section(mode: str) -> SplitConfig:
        config = {**run_config, "capability": "split", "split.mode": mode}
        parsed = load_run_settings(config).section
        assert isinstance(parsed, SplitConfig)
        return parsed

    assert section("split-ushaped").ushaped and section("split").sequential
    assert not section("splitfed-v1").sequential and not section("splitfed-v2").ushaped
