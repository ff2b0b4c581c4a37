"""Black-box models: training, the uniform interface, cost metadata, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgecloud.data.testbed import Testbed, load_samples
from edgecloud.data.testbed.samples import SEQUENCE_SLOTS
from edgecloud.models import (
    SPECS,
    BlackBoxModel,
    BlackBoxTraining,
    load_blackboxes,
    score,
    train_all,
)


@pytest.fixture(scope="module")
def trained(tiny_testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    train_all(
        tiny_testbed, out, settings=BlackBoxTraining(epochs=2), every=4, progress=False
    )
    return out


def test_every_black_box_saves_metadata_and_loads_back_identically(
    tiny_testbed: Testbed, trained: Path
) -> None:
    # Prepare
    frames = np.stack([f.image for f in tiny_testbed.camera(2).frames(every=12)])

    # Execute
    models = load_blackboxes(trained)

    # Assert: all five, with cost metadata and held-out figures
    assert sorted(models) == sorted(SPECS)
    for name, model in models.items():
        assert model.cost.parameters == sum(p.numel() for p in model.net.parameters())
        assert model.cost.flops > 100_000 and model.cost.latency_ms > 0
        assert model.cost.peak_memory_bytes > 4 * model.cost.parameters
        assert 0.0 <= model.metrics["accuracy"] <= 1.0
        assert model.training["test_cameras"] == [2]
        out = model(frames)  # full-resolution RGB frames in, predictions out
        expected = (
            (len(frames),) if model.spec.slots == 1 else (len(frames), SEQUENCE_SLOTS)
        )
        assert out.shape == expected and out.dtype == np.int64
        assert out.max() < len(model.spec.classes)
        reloaded = BlackBoxModel.load(trained / name)
        assert np.array_equal(reloaded(frames), out)


def test_scores_of_a_model_are_recomputable(
    tiny_testbed: Testbed, trained: Path
) -> None:
    model = BlackBoxModel.load(trained / "vehicle-counter")
    test = load_samples(tiny_testbed, (2,), every=4)
    again = score(model, test)
    assert again["accuracy"] == pytest.approx(model.metrics["accuracy"])
    assert {"mae", "within_one", "day_accuracy", "night_accuracy"} <= set(model.metrics)


def test_loading_refuses_pickled_code_and_missing_files(
    tmp_path: Path, trained: Path
) -> None:
    # A weights file that is a pickled object, not tensors, is refused
    target = tmp_path / "evil"
    target.mkdir()
    (target / "meta.json").write_text(
        (trained / "vehicle-counter" / "meta.json").read_text()
    )
    torch.save({"x": object()}, target / "model.pt")
    with pytest.raises(Exception, match=r"Weights only load failed|Unsupported"):
        BlackBoxModel.load(target)
    with pytest.raises(FileNotFoundError, match="train the models"):
        BlackBoxModel.load(tmp_path / "nothing")
