"""What every task-based workflow sets up first: the model, the test set, outputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgecloud.data.arrays import LabeledArrays
from edgecloud.results import RunRecorder
from edgecloud.settings import RunSettings, Section
from edgecloud.tasks import Task


@dataclass(frozen=True)
class TaskSetup:
    """The run's task, its initial global model and the held-out test set."""

    task: Task
    model: nn.Module
    test_set: LabeledArrays


def set_up_task(settings: RunSettings[Section]) -> TaskSetup:
    """Build the initial model (seeded: every run starts from the same weights)."""
    common = settings.common
    task = common.task_plugin
    torch.manual_seed(common.seed)
    model = task.build_model()
    test_set = task.load_dataset(
        common.resolved_dataset, False, common.data_path, common.data_download
    )
    return TaskSetup(task, model, test_set)


def make_recorder(settings: RunSettings[Section], label: str) -> RunRecorder:
    """The run's recorder: its flat config, the keys that may change on resume."""
    return RunRecorder(
        settings.common.output_path,
        settings.to_run_config(),
        settings.resumable_keys(),
        label,
    )
