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

from edgecloud.local_simulation import run_local_simulations
from edgecloud.results import latest_checkpoint, load_checkpoint
from tests.e2e.helpers import read_outputs

pytestmark = pytest.mark.slow

ROUNDS = 4
KILL_AFTER = 2
_SCRIPT = """
import sys
from edgecloud.local_simulation import run_local_simulation
run_local_simulation(
    {{"num-server-rounds": {rounds}, "fl.strategy": "fedadam",
      "output-dir": sys.argv[1], "resume": {resume}}},
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

    # Execute: the same command with resume=true; in the same simulation, a
    # resume=true run in a directory without checkpoints
    fresh = tmp_path / "fresh"
    errors = run_local_simulations(
        {
            "resumed": {
                "num-server-rounds": ROUNDS,
                "fl.strategy": "fedadam",
                "output-dir": str(output_dir),
                "resume": True,
            },
            "nothing-to-resume": {
                "num-server-rounds": 1,
                "output-dir": str(fresh),
                "resume": True,
            },
        },
        num_supernodes=3,
    )

    # Assert: as many completed rounds as an uninterrupted run, none repeated
    assert errors == {"resumed": None, "nothing-to-resume": None}
    results = read_outputs(output_dir)
    assert results["status"] == "completed"
    assert results["completed_rounds"] == ROUNDS
    assert [r["round"] for r in results["rounds"]] == list(range(ROUNDS + 1))
    assert results["resumed_from_round"] == resumed_from
    final = results["rounds"][-1]
    assert final["central_accuracy"] > results["rounds"][0]["central_accuracy"]
    # resume=true with nothing to resume starts fresh
    started_fresh = read_outputs(fresh)
    assert started_fresh["completed_rounds"] == 1
    assert started_fresh["resumed_from_round"] is None
