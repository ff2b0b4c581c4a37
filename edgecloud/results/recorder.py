"""Writes a run's outputs as rounds finish, and restores them on resume."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy.typing as npt

from edgecloud.exceptions import CheckpointError
from edgecloud.results.checkpoints import (
    Checkpoint,
    StrategyState,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from edgecloud.results.history import RoundRecord, RunHistory
from edgecloud.results.report import (
    plot_accuracy,
    summary_lines,
    summary_table,
    table_header,
    table_row,
)

RESULTS_JSON = "results.json"
METRICS_CSV = "metrics.csv"
ACCURACY_PNG = "accuracy.png"
CHECKPOINT_DIR = "checkpoints"

logger = logging.getLogger("flwr")


class RunRecorder:
    """Owns ``output_dir``: results.json, metrics.csv, accuracy.png, checkpoints/.

    Every finished round is written immediately (atomically), so a run killed in
    round k+1 leaves the outputs and the checkpoint of round k behind.

    Parameters
    ----------
    output_dir : pathlib.Path
        Where the files go.
    config : Mapping
        The run's flat configuration (recorded in results.json and checkpoints).
    resumable : frozenset of str
        Config keys that may differ between a checkpoint and its resumption.
    label : str
        What ran, for the plot title and results.json.
    """

    def __init__(
        self,
        output_dir: Path,
        config: Mapping[str, Any],
        resumable: frozenset[str] = frozenset(),
        label: str = "",
    ) -> None:
        self.output_dir = output_dir
        self.resumable = resumable
        self.checkpoint_dir = output_dir / CHECKPOINT_DIR
        self.history = RunHistory(config=dict(config), label=label)
        self._header_logged = False

    def start(self, resume: bool) -> Checkpoint | None:
        """Prepare the directory; with ``resume``, return the latest checkpoint.

        A fresh run (``resume`` false) removes old checkpoints of a previous run in
        the same directory so that a later resume cannot mix the two.

        Raises
        ------
        CheckpointError
            If the checkpoint is damaged or was written with an incompatible config.
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            if self.checkpoint_dir.exists():
                logger.warning(
                    "fresh run: removing old checkpoints in %s", self.checkpoint_dir
                )
                shutil.rmtree(self.checkpoint_dir)
            return None
        path = latest_checkpoint(self.checkpoint_dir)
        if path is None:
            logger.warning(
                "resume=true but no checkpoint in %s: starting from round 1",
                self.checkpoint_dir,
            )
            return None
        checkpoint = load_checkpoint(path)
        changed = sorted(
            key
            for key in set(self.history.config) | set(checkpoint.history.config)
            if key not in self.resumable
            and self.history.config.get(key) != checkpoint.history.config.get(key)
        )
        if changed:
            diffs = ", ".join(
                f"{k}: checkpoint {checkpoint.history.config.get(k)!r} vs now "
                f"{self.history.config.get(k)!r}"
                for k in changed
            )
            raise CheckpointError(
                f"cannot resume from {path}: run config differs ({diffs}); expected "
                f"only {', '.join(sorted(self.resumable)) or 'nothing'} to change"
            )
        config, label = self.history.config, self.history.label
        self.history = checkpoint.history
        self.history.config, self.history.label = config, label
        self.history.status = "running"
        self.history.resumed_from_round = checkpoint.round
        self.history.rounds = [
            r for r in self.history.rounds if r.round <= checkpoint.round
        ]
        logger.info("resuming after round %d from %s", checkpoint.round, path)
        return checkpoint

    def set_partitions(self, partitions: list[dict[str, Any]]) -> None:
        """Record the partition summary (sizes, label histograms) of the clients."""
        self.history.partitions = partitions

    def set_summary(self, summary: Mapping[str, Any]) -> None:
        """Record the run's totals and rates (written with the next file update)."""
        self.history.summary = dict(summary)

    def record_round(
        self,
        record: RoundRecord,
        arrays: Mapping[str, npt.NDArray[Any]] | None,
        strategy_state: StrategyState,
    ) -> None:
        """Append a finished round, log its table row and write every output file."""
        self.history.rounds.append(record)
        if not self._header_logged:
            logger.info(table_header())
            self._header_logged = True
        logger.info(table_row(record))
        if arrays is not None and record.round > 0:
            save_checkpoint(
                self.checkpoint_dir,
                Checkpoint(record.round, dict(arrays), strategy_state, self.history),
            )
        self._write_files()

    def finish(self, status: str = "completed") -> RunHistory:
        """Mark the run finished, write the files and log the summary."""
        self.history.status = status
        self._write_files()
        for line in summary_table(self.history).splitlines():
            logger.info(line)
        for line in summary_lines(self.history, self.output_dir):
            logger.info(line)
        return self.history

    def _write_files(self) -> None:
        self.history.write_json(self.output_dir / RESULTS_JSON)
        self.history.write_csv(self.output_dir / METRICS_CSV)
        plot_accuracy(self.history, self.output_dir / ACCURACY_PNG)
