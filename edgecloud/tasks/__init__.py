"""Task registry: task name -> task instance (tasks never import flwr)."""

from edgecloud.tasks.base import (
    ClientData,
    EvalResult,
    SplitModel,
    Task,
    TrainResult,
    TrainSettings,
    load_numpy_state,
    split_client_data,
    state_to_numpy,
)
from edgecloud.tasks.camera_task import CameraTask
from edgecloud.tasks.cifar10_cnn import Cifar10Cnn
from edgecloud.tasks.digits_cnn import DigitsCnn
from edgecloud.tasks.resnet18_cifar import Resnet18Cifar
from edgecloud.tasks.testbed_vehicles import TestbedVehicles

TASKS: dict[str, Task] = {
    task.name: task
    for task in (DigitsCnn(), Cifar10Cnn(), Resnet18Cifar(), TestbedVehicles())
}


def get_task(name: str) -> Task:
    """The registered task called ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(
            f"task {name!r} unknown; expected one of: {', '.join(TASKS)}"
        ) from None


__all__ = [
    "TASKS",
    "CameraTask",
    "ClientData",
    "EvalResult",
    "SplitModel",
    "Task",
    "TrainResult",
    "TrainSettings",
    "get_task",
    "load_numpy_state",
    "split_client_data",
    "state_to_numpy",
]
