"""Checkpoints and the recorder: atomic files, safe loading, resume compatibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecloud.exceptions import CheckpointError
from edgecloud.results import (
    Checkpoint,
    RoundRecord,
    RunHistory,
    RunRecorder,
    latest_checkpoint,
    load_checkpoint,
)
from edgecloud.results.checkpoints import save_checkpoint

CONFIG = {"fl.strategy": "fedadam", "num-server-rounds": 3, "output-dir": "x"}
RESUMABLE = frozenset({"num-server-rounds", "output-dir"})


def _checkpoint(rnd: int) -> Checkpoint:
    history = RunHistory(config=dict(CONFIG))
    history.rounds = [
        RoundRecord(round=r, central_accuracy=0.1 * r) for r in range(rnd + 1)
    ]
    return Checkpoint(
        round=rnd,
        arrays={"w": np.full((2, 2), rnd, dtype=np.float32), "n": np.array([rnd])},
        strategy_state={"0.FedAdam.m_t": {"w": np.ones(2)}, "1.X.clipping_norm": 0.5},
        history=history,
    )


def test_save_load_round_trip_and_latest(tmp_path: Path) -> None:
    # Execute
    for rnd in (1, 2, 10):
        save_checkpoint(tmp_path, _checkpoint(rnd))
    latest = latest_checkpoint(tmp_path)
    assert latest is not None
    loaded = load_checkpoint(latest)

    # Assert: round 10 sorts after round 2 (numeric, not lexicographic)
    assert latest.name == "round-0010.pt"
    assert loaded.round == 10
    np.testing.assert_array_equal(loaded.arrays["w"], np.full((2, 2), 10))
    assert loaded.arrays["n"].dtype == np.int64
    np.testing.assert_array_equal(
        loaded.strategy_state["0.FedAdam.m_t"]["w"], np.ones(2)
    )  # type: ignore[index]
    assert loaded.strategy_state["1.X.clipping_norm"] == 0.5
    assert loaded.history.completed_rounds == 10
    assert not list(tmp_path.glob("*.tmp"))


def test_damaged_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    # Prepare
    path = save_checkpoint(tmp_path, _checkpoint(1))
    path.write_bytes(path.read_bytes()[:100])

    # Execute / Assert
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_checkpoint_with_code_is_refused(tmp_path: Path) -> None:
    # Prepare: a pickle that would run code if loaded without weights_only
    import torch

    class _Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("owned",))

    path = tmp_path / "round-0001.pt"
    torch.save({"format": 1, "evil": _Evil()}, path)

    # Execute / Assert
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_recorder_resumes_from_compatible_checkpoint(tmp_path: Path) -> None:
    # Prepare
    save_checkpoint(tmp_path / "checkpoints", _checkpoint(2))
    recorder = RunRecorder(tmp_path, {**CONFIG, "num-server-rounds": 5}, RESUMABLE)

    # Execute
    checkpoint = recorder.start(resume=True)

    # Assert
    assert checkpoint is not None and checkpoint.round == 2
    assert recorder.history.resumed_from_round == 2
    assert recorder.history.config["num-server-rounds"] == 5


def test_recorder_refuses_checkpoint_of_another_config(tmp_path: Path) -> None:
    # Prepare
    save_checkpoint(tmp_path / "checkpoints", _checkpoint(2))
    recorder = RunRecorder(tmp_path, {**CONFIG, "fl.strategy": "fedavg"}, RESUMABLE)

    # Execute / Assert: the message names the key, both values and what may change
    with pytest.raises(CheckpointError) as info:
        recorder.start(resume=True)
    assert "fl.strategy: checkpoint 'fedadam' vs now 'fedavg'" in str(info.value)
    assert "expected only num-server-rounds, output-dir to change" in str(info.value)


def test_fresh_run_clears_old_checkpoints(tmp_path: Path) -> None:
    # Prepare
    save_checkpoint(tmp_path / "checkpoints", _checkpoint(2))

    # Execute
    assert RunRecorder(tmp_path, CONFIG).start(resume=False) is None

    # Assert
    assert latest_checkpoint(tmp_path / "checkpoints") is None


def test_recorder_writes_parseable_outputs(tmp_path: Path) -> None:
    # Prepare
    recorder = RunRecorder(tmp_path, CONFIG)
    recorder.start(resume=False)

    # Execute
    recorder.record_round(RoundRecord(round=0, central_accuracy=0.1), None, {})
    recorder.record_round(
        RoundRecord(round=1, central_accuracy=0.8, bytes_up=10, extra={"q": 1.0}),
        {"w": np.zeros(2, dtype=np.float32)},
        {},
    )
    history = recorder.finish()

    # Assert
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["status"] == "completed" and data["completed_rounds"] == 1
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].endswith("extra.q") and len(csv_lines) == 3
    assert (tmp_path / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert latest_checkpoint(tmp_path / "checkpoints") is not None
    assert history.last is not None and history.last.round == 1


def test_nan_metrics_become_null_in_json(tmp_path: Path) -> None:
    # Prepare
    history = RunHistory(
        config={}, rounds=[RoundRecord(round=1, central_loss=float("nan"))]
    )

    # Execute
    history.write_json(tmp_path / "r.json")

    # Assert
    assert (
        json.loads((tmp_path / "r.json").read_text())["rounds"][0]["central_loss"]
        is None
    )
