"""Replayed streams: real packet metadata, out of phase; the whole decision timed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecloud.data.testbed import generate_testbed, preset
from edgecloud.packetgame.dependencies import DecodeCosts
from edgecloud.packetgame.replay import camera_metadata, replay, replay_decision_cost

COSTS = DecodeCosts(intra=4.0, predicted=1.0, bidirectional=0.7)


def test_replayed_streams_carry_camera_metadata_out_of_phase(tmp_path: Path) -> None:
    # Prepare
    cfg = preset("tiny", num_cameras=2, held_out_cameras=0, duration_s=4.0)
    testbed, _ = generate_testbed(cfg, tmp_path, workers=1, progress=False)
    cameras = [camera_metadata(c) for c in testbed.cameras]

    # Execute
    streams = replay(cameras, num_streams=40, rounds=60, seed=1)
    timing = replay_decision_cost(streams, COSTS, window=5, warmup=5)

    # Assert: each stream is a rotation of its camera's packet sizes
    assert streams.sizes.shape == (60, 40)
    for j in (0, 1, 7):
        source = cameras[j % 2].sizes[:, 0]
        column = streams.sizes[:, j]
        offsets = [k for k in range(len(source)) if source[k] == column[0]]
        assert any(
            np.array_equal(np.roll(source, -k)[: len(column)], column[: len(source)])
            for k in offsets
        )
    assert len({tuple(streams.random_access[:, j]) for j in range(40)}) > 2
    assert all(timing[f"{k}-s"] > 0 for k in ("total", "dependencies", "optimizer"))


def test_replay_refuses_nothing_to_replay() -> None:
    with pytest.raises(ValueError, match="no cameras"):
        replay([], num_streams=3, rounds=3)
