"""Helpers for end-to-end tests: read a run's outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def read_outputs(output_dir: Path) -> dict[str, Any]:
    """Parse results.json and metrics.csv and check the PNG and checkpoints exist."""
    results = json.loads((output_dir / "results.json").read_text())
    with (output_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(results["rounds"])
    assert (output_dir / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    checkpoints = sorted((output_dir / "checkpoints").glob("round-*.pt"))
    assert len(checkpoints) == results["completed_rounds"]  # one per round
    return dict(results)
