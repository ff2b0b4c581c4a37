"""Per-round records of a run and their JSON / CSV forms."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class RoundRecord:
    """What happened in one server round (round 0 = the initial model).

    Losses and accuracies are ``None`` where they were not measured (e.g.
    ``fraction-evaluate=0`` leaves the federated ones empty). Bytes are the sizes of
    the records in the messages (Flower's ``count_bytes``), summed over clients.
    """

    round: int
    central_loss: float | None = None
    central_accuracy: float | None = None
    train_loss: float | None = None
    federated_loss: float | None = None
    federated_accuracy: float | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    seconds: float = 0.0
    train_replies: int = 0
    failures: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundRecord:
        """Inverse of :func:`dataclasses.asdict` (unknown keys are an error)."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown round record fields {sorted(unknown)}")
        return cls(**data)


@dataclass
class RunHistory:
    """Everything ``results.json`` holds: config, partitions, rounds, status.

    Every capability writes this one schema: one :class:`RoundRecord` per round (an
    interactive protocol without rounds, such as STIP, records one per exchange)
    and, in ``summary``, totals and rates of its own (e.g. tokens per second).
    """

    config: dict[str, Any]
    rounds: list[RoundRecord] = field(default_factory=list)
    partitions: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    resumed_from_round: int | None = None
    label: str = ""  # what ran, e.g. "fl: fedavg on digits-cnn (iid)"
    summary: dict[str, Any] = field(default_factory=dict)  # capability's totals

    @property
    def completed_rounds(self) -> int:
        """Number of finished server rounds (round 0 does not count)."""
        return sum(1 for r in self.rounds if r.round > 0)

    @property
    def last(self) -> RoundRecord | None:
        """The latest round record, if any."""
        return self.rounds[-1] if self.rounds else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN becomes null)."""
        data = {
            "config": self.config,
            "status": self.status,
            "completed_rounds": self.completed_rounds,
            "resumed_from_round": self.resumed_from_round,
            "label": self.label,
            "partitions": self.partitions,
            "summary": self.summary,
            "rounds": [asdict(r) for r in self.rounds],
        }
        cleaned: dict[str, Any] = _nan_to_none(data)  # type: ignore[assignment]
        return cleaned

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunHistory:
        """Inverse of :meth:`to_dict`."""
        return cls(
            config=dict(data["config"]),
            rounds=[RoundRecord.from_dict(r) for r in data["rounds"]],
            partitions=list(data.get("partitions", [])),
            status=str(data.get("status", "running")),
            resumed_from_round=data.get("resumed_from_round"),
            label=str(data.get("label", "")),
            summary=dict(data.get("summary", {})),
        )

    def write_json(self, path: Path) -> None:
        """Write ``results.json`` atomically (a reader never sees half a file)."""
        _atomic_write(path, json.dumps(self.to_dict(), indent=2, allow_nan=False))

    def write_csv(self, path: Path) -> None:
        """Write a row per round; ``extra`` metrics become ``extra.<name>`` columns."""
        extra_keys = sorted({k for r in self.rounds for k in r.extra})
        base = [f.name for f in fields(RoundRecord) if f.name != "extra"]
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(base + [f"extra.{k}" for k in extra_keys])
            for record in self.rounds:
                row = asdict(record)
                writer.writerow(
                    [_cell(row[name]) for name in base]
                    + [_cell(record.extra.get(k)) for k in extra_keys]
                )
        os.replace(tmp, path)


def _cell(value: object) -> object:
    return "" if value is None else value


def _nan_to_none(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
