"""``python -m edgecloud.data.testbed``: black boxes from the CLI, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecloud.data.testbed import Testbed, generate_testbed, load_testbed, preset
from edgecloud.data.testbed.__main__ import main
from edgecloud.models import load_blackboxes


def test_train_models_saves_loadable_black_boxes(
    tiny_testbed: Testbed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code = main(
        [
            "train-models",
            "--testbed", str(tiny_testbed.root),
            "--epochs", "1",
            "--every", "6",
            "--models", "vehicle-counter",
            "--out", str(tmp_path),
        ]
    )  # fmt: skip

    # Assert
    assert code == 0
    assert "vehicle-counter" in capsys.readouterr().out
    models = load_blackboxes(tmp_path)
    assert list(models) == ["vehicle-counter"]
    assert models["vehicle-counter"].training["epochs"] == 1


def test_readme_vp9_example_generates_without_b_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute: the README's example, on a shorter tiny testbed
    code = main(
        [
            "generate", "--out", str(tmp_path), "--preset", "tiny",
            "--codec", "vp9", "--audio", "--shake",
            "--cameras", "1", "--held-out-cameras", "0", "--seconds", "3",
            "--workers", "1",
        ]
    )  # fmt: skip

    # Assert: the preset's B-frames were dropped for VP9, not refused
    assert code == 0, capsys.readouterr().err
    cfg = load_testbed(tmp_path).config
    assert cfg.codec == "vp9" and cfg.b_frames == 0 and cfg.audio and cfg.shake


def test_vp9_with_explicit_b_frames_is_refused_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code = main(
        ["generate", "--out", str(tmp_path), "--preset", "tiny", "--codec", "vp9",
         "--b-frames", "2"]
    )  # fmt: skip

    # Assert
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "'b_frames' has value 2 with codec 'vp9'; expected 0" in err
    assert "alt-ref" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # no testbed where it points
        (["train-models", "--testbed", "{missing}"], "no testbed manifest"),
        # a model that does not exist
        (["train-models", "--testbed", "{tiny}", "--models", "x"], "--models ['x']"),
        # zero epochs cannot train anything
        (["train-models", "--testbed", "{tiny}", "--epochs", "0"], "epochs is 0"),
        # every 0th frame is no frame at all
        (["domain-shift", "--testbed", "{tiny}", "--every", "0"], "every is 0"),
        # 2 s hold no held-out 5-second block of split "time"
        (["domain-shift", "--testbed", "{short}", "--split", "time"], "no held-out"),
        (["info", "{missing}"], "no testbed manifest"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str],
    message: str,
    tiny_testbed: Testbed,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare
    short, _ = generate_testbed(
        preset("tiny", num_cameras=2, duration_s=2.0), tmp_path / "s", progress=False
    )
    paths = {
        "tiny": str(tiny_testbed.root),
        "short": str(short.root),
        "missing": str(tmp_path / "missing"),
    }

    # Execute
    code = main([a.format(**paths) for a in args])

    # Assert
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err
