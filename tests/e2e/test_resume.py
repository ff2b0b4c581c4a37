"""Kill the simulation after round k, resume, and end with all rounds completed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecloud.local_simulation import run_local_simulation
from edgecloud.results import latest_checkpoint, load_checkpoint
from tests.e2e.helpers import read_outputs

pytestmark = pytest.mark.slow

ROUNDS = 4
KILL_AFTER = 2
_SCRIPT = """
import sys
from edgecloud.local_simulation import run_local_simulation
from edgecloud.results import latest_checkpoint, load_checkpoint
run_local_simulation(
    {{"num-server-rounds": {rounds}, "strategy": "fedadam", "output-dir": sys.argv[1],
      "resume": {resume}}},
    num_supernodes=3,
)
"""


def _start(output_dir: Path, resume: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SCRIPT.format(rounds=ROUNDS, resume=resume),
            str(output_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so the kill reaches Ray's processes too
    )


def _completed_rounds(output_dir: Path) -> int:
    try:
        return int(
            json.loads((output_dir / "results.json").read_text())["completed_rounds"]
        )
    except (OSError, ValueError, KeyError):
        return 0  # not written yet


def test_resume_after_kill_completes_all_rounds(tmp_path: Path) -> None:
    # Prepare: run until round KILL_AFTER is recorded, then SIGKILL everything
    output_dir = tmp_path / "run"
    process = _start(output_dir, resume=False)
    deadline = time.monotonic() + 300
    try:
        while _completed_rounds(output_dir) < KILL_AFTER:
            assert process.poll() is None, "simulation ended before it could be killed"
            assert time.monotonic() < deadline, "round not reached within 300 s"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    interrupted = json.loads((output_dir / "results.json").read_text())
    assert interrupted["status"] == "running"
    last_checkpoint = latest_checkpoint(output_dir / "checkpoints")
    assert last_checkpoint is not None
    resumed_from = load_checkpoint(last_checkpoint).round
    assert KILL_AFTER <= resumed_from < ROUNDS

    # Execute: the same command with resume=true
    run_local_simulation(
        {
            "num-server-rounds": ROUNDS,
            "strategy": "fedadam",
            "output-dir": str(output_dir),
            "resume": True,
        },
        num_supernodes=3,
    )

    # Assert: as many completed rounds as an uninterrupted run, none repeated
    results = read_outputs(output_dir)
    assert results["status"] == "completed"
    assert results["completed_rounds"] == ROUNDS
    assert [r["round"] for r in results["rounds"]] == list(range(ROUNDS + 1))
    assert results["resumed_from_round"] == resumed_from
    final = results["rounds"][-1]
    assert final["central_accuracy"] > results["rounds"][0]["central_accuracy"]


def test_resume_with_nothing_to_resume_starts_fresh(tmp_path: Path) -> None:
    # Execute
    run_local_simulation(
        {"num-server-rounds": 1, "output-dir": str(tmp_path), "resume": True},
        num_supernodes=2,
    )

    # Assert
    results = read_outputs(tmp_path)
    assert results["completed_rounds"] == 1 and results["resumed_from_round"] is None
