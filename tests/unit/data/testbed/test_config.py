"""Testbed settings: presets, validation messages, dict round trip."""

from __future__ import annotations

import pytest

from edgecloud.data.testbed.config import PRESETS, TestbedConfig, preset


def test_presets_are_valid_and_default_is_the_documented_testbed() -> None:
    # Prepare / Execute
    default = PRESETS["default"]

    # Assert: 8 cameras x 10 minutes at 320x240, 10 fps
    assert (default.num_cameras, default.duration_s) == (8, 600.0)
    assert (default.width, default.height, default.fps) == (320, 240, 10)
    assert default.num_frames == 6000
    assert default.train_cameras == tuple(range(6))
    assert default.test_cameras == (6, 7)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"num_cameras": 0}, "num_cameras"),  # no camera at all
        ({"width": 161}, "width"),  # odd width breaks 4:2:0 chroma
        ({"height": 20}, "height"),  # too small to draw a person
        ({"codec": "av1"}, "codec"),  # not one of the three encoders
        ({"gop": 0}, "gop"),  # a GOP has at least one frame
        ({"b_frames": 9}, "b_frames"),  # beyond what the encoders accept
        ({"codec": "vp9", "b_frames": 2}, "b_frames"),  # VP9 has no B-frames
        ({"start_hour": 24.0}, "start_hour"),  # hours are [0, 24)
        ({"held_out_cameras": 8}, "held_out_cameras"),  # nothing left to train on
        ({"events_per_hour": -1.0}, "events_per_hour"),  # a negative rate
    ],
)
def test_invalid_settings_name_the_key_and_value(
    overrides: dict[str, object], key: str
) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=f"'{key}'") as err:
        preset("default", **overrides)
    assert "expected" in str(err.value)


def test_unknown_preset_and_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="preset 'huge' unknown"):
        preset("huge")
    with pytest.raises(ValueError, match=r"\['colour'\] unknown"):
        TestbedConfig.from_dict({"colour": "red"})


def test_dict_round_trip_and_day_cycle() -> None:
    # Prepare
    cfg = preset("tiny", seed=7, codec="h265")

    # Execute / Assert
    assert TestbedConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.hour_of_frame(0) == 0.0
    assert cfg.hour_of_frame(cfg.num_frames // 2) == pytest.approx(12.0)
    assert cfg.is_night(2.0) and cfg.is_night(20.0)
    assert not cfg.is_night(12.0)
