"""Run outputs: history, checkpoints, tables and plots (no flwr import)."""

from edgecloud.results.checkpoints import Checkpoint, latest_checkpoint, load_checkpoint
from edgecloud.results.history import RoundRecord, RunHistory
from edgecloud.results.recorder import RunRecorder

__all__ = [
    "Checkpoint",
    "RoundRecord",
    "RunHistory",
    "RunRecorder",
    "latest_checkpoint",
    "load_checkpoint",
]
