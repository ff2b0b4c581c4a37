"""Generated files through real PyAV codecs: determinism, decoding, packets, audio."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecloud.data.testbed import (
    Testbed,
    TestbedConfig,
    generate_testbed,
    interleave_live,
    load_testbed,
    preset,
)
from edgecloud.data.testbed import generate as generate_module
from edgecloud.data.testbed.generate import ensure_testbed
from edgecloud.data.testbed.labels import read_object_boxes
from edgecloud.data.testbed.scene import CameraScene


def _label_bytes(root: Path) -> dict[str, bytes]:
    names = ["manifest.json", *sorted(p.name for p in root.glob("*.csv"))]
    return {name: (root / name).read_bytes() for name in names}


def _decoded(testbed: Testbed, camera: int) -> list[np.ndarray]:
    return [f.image for f in testbed.camera(camera).frames()]


@pytest.mark.parametrize("codec", ["h264", "h265", "vp9"])
def test_same_seed_byte_identical_labels_and_identical_decoded_frames(
    tmp_path: Path, codec: str
) -> None:
    # Prepare
    b_frames = 0 if codec == "vp9" else 2
    cfg = preset("tiny", num_cameras=2, duration_s=6.0, codec=codec, b_frames=b_frames)

    # Execute: twice with the same seed (in parallel workers), once with another
    first, _ = generate_testbed(cfg, tmp_path / "a", workers=2, progress=False)
    second, _ = generate_testbed(cfg, tmp_path / "b", workers=1, progress=False)
    third, _ = generate_testbed(cfg, tmp_path / "d", workers=1, progress=False)
    other, _ = generate_testbed(
        preset(
            "tiny",
            num_cameras=2,
            duration_s=6.0,
            codec=codec,
            b_frames=b_frames,
            seed=1,
        ),
        tmp_path / "c",
        progress=False,
    )

    # Assert
    assert _label_bytes(tmp_path / "a") == _label_bytes(tmp_path / "b")
    for cam in (0, 1):
        a, b, d = (_decoded(t, cam) for t in (first, second, third))
        assert len(a) == len(b) == len(d) == cfg.num_frames
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert all(np.array_equal(x, y) for x, y in zip(a, d, strict=True))
    assert (tmp_path / "a" / "cam00.frames.csv").read_bytes() != (
        tmp_path / "c" / "cam00.frames.csv"
    ).read_bytes()
    assert not np.array_equal(_decoded(first, 0)[0], _decoded(other, 0)[0])


def test_decoded_frames_are_the_rendered_frames_with_their_labels(
    tiny_testbed: Testbed,
) -> None:
    # Prepare: render camera 1 again, decode its video
    rendered = list(CameraScene(tiny_testbed.config, 1).frames())
    decoded = list(tiny_testbed.camera(1).frames())

    # Assert: same order, same labels, pictures equal up to coding loss
    assert [d.frame_index for d in decoded] == list(range(len(rendered)))
    assert [d.label for d in decoded] == [r.label for r in rendered]
    psnr = []
    for d, r in zip(decoded, rendered, strict=True):
        mse = np.mean((d.image.astype(np.float64) - r.image) ** 2)
        psnr.append(10 * np.log10(255**2 / max(mse, 1e-9)))
    assert np.median(psnr) > 25.0


def test_manifest_label_files_and_object_csv_round_trip(tiny_testbed: Testbed) -> None:
    manifest = json.loads((tiny_testbed.root / "manifest.json").read_text())
    assert manifest["format"] == "edgecloud-testbed/1"
    assert TestbedConfig.from_dict(manifest["config"]) == tiny_testbed.config
    assert [c["split"] for c in manifest["cameras"]] == ["train", "train", "test"]
    cam = tiny_testbed.camera(0)
    boxes = read_object_boxes(tiny_testbed.root / "cam00.objects.csv")
    rendered = [
        b for f in CameraScene(tiny_testbed.config, 0).frames() for b in f.objects
    ]
    assert boxes == rendered
    assert len(cam.labels) == tiny_testbed.config.num_frames


CODEC_SETTINGS = [
    # (codec, gop, b_frames): every combination the encoders support
    ("h264", 1, 0),  # intra only
    ("h264", 10, 0),  # I and P
    ("h264", 12, 3),  # I, P and up to 3 B
    ("h265", 8, 0),
    ("h265", 12, 2),
    ("vp9", 1, 0),
    ("vp9", 10, 0),
]


@pytest.mark.parametrize(("codec", "gop", "b_frames"), CODEC_SETTINGS)
def test_every_codec_gop_and_b_frame_setting_decodes_and_demuxes(
    tmp_path: Path, codec: str, gop: int, b_frames: int
) -> None:
    # Prepare
    cfg = preset(
        "tiny",
        num_cameras=1,
        held_out_cameras=0,
        duration_s=3.0,
        codec=codec,
        gop=gop,
        b_frames=b_frames,
    )
    testbed, _ = generate_testbed(cfg, tmp_path, workers=1, progress=False)
    cam = testbed.camera(0)

    # Execute
    frames = list(cam.frames())
    packets = [p for p, _ in cam.packets()]

    # Assert: decoded back, every frame, key frames every `gop`
    assert [f.frame_index for f in frames] == list(range(cfg.num_frames))
    types = Counter(f.picture_type for f in frames)
    assert [f.frame_index for f in frames if f.picture_type == "I"] == list(
        range(0, cfg.num_frames, gop)
    )
    assert (types["B"] > 0) == (b_frames > 0)
    # Packets, not decoded: size, key flag, pts and dts of every one
    assert sorted(p.frame_index for p in packets) == list(range(cfg.num_frames))
    assert all(p.size > 0 and p.size == len(p.data) for p in packets)
    assert [p.frame_index for p in packets if p.keyframe] == list(
        range(0, cfg.num_frames, gop)
    )
    dts = [p.dts for p in packets]
    assert dts == sorted(dts) and len(set(dts)) == len(dts)
    assert all(p.pts >= p.dts for p in packets)
    reordered = any(p.frame_index != p.decode_index for p in packets)
    assert reordered == (b_frames > 0)


def test_vp9_key_frames_come_every_gop_and_the_manifest_lists_the_extra_ones(
    tmp_path: Path,
) -> None:
    # Prepare: the size at which libvpx's real-time mode adds key frames at the
    # day/night switches (issue 11); 50 s at 10 fps cross two of them
    cfg = preset(
        "tiny",
        num_cameras=1,
        held_out_cameras=0,
        duration_s=50.0,
        codec="vp9",
        gop=50,
        width=330,
        height=250,
    )

    # Execute
    testbed, _ = generate_testbed(cfg, tmp_path, workers=1, progress=False)
    cam = testbed.camera(0)
    flagged = [p.frame_index for p, _ in cam.packets() if p.keyframe]
    intra = [f.frame_index for f in cam.frames() if f.picture_type == "I"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())

    # Assert: a key frame at least every `gop` frames, each one flagged on its
    # packet, decoded as a key frame and listed in the manifest
    assert set(range(0, cfg.num_frames, cfg.gop)) <= set(flagged)
    assert flagged == intra == manifest["cameras"][0]["key_frames"]
    assert len(flagged) > cfg.num_frames // cfg.gop  # the extra ones still come


def test_packets_decode_with_a_fresh_decoder(tiny_testbed: Testbed) -> None:
    # Prepare
    import av

    cam = tiny_testbed.camera(0)
    decoder = cam.make_decoder()

    # Execute: feed the demuxed bytes to a decoder of our own
    images = []
    for info, _label in cam.packets():
        images.extend(
            f.to_ndarray(format="rgb24") for f in decoder.decode(av.Packet(info.data))
        )
    images.extend(f.to_ndarray(format="rgb24") for f in decoder.decode(None))

    # Assert: the same pictures as the container's own decoding
    reference = _decoded(tiny_testbed, 0)
    assert len(images) == len(reference)
    assert all(np.array_equal(a, b) for a, b in zip(images, reference, strict=True))


def test_interleaved_live_streams_give_one_packet_per_stream_per_tick(
    tiny_testbed: Testbed,
) -> None:
    # Execute
    live = list(interleave_live(tiny_testbed.cameras))

    # Assert
    per_tick = Counter(p.tick for p in live)
    assert set(per_tick.values()) == {3}
    for tick in range(3):
        assert [p.packet.camera_id for p in live if p.tick == tick] == [0, 1, 2]
    assert len(live) == 3 * tiny_testbed.config.num_frames
    assert all(p.label.frame_index == p.packet.frame_index for p in live)


def test_audio_track_follows_the_scene(tiny_testbed: Testbed) -> None:
    samples, rate = tiny_testbed.camera(0).audio()
    assert rate > 0
    duration = len(samples) / rate
    assert abs(duration - tiny_testbed.config.duration_s) < 0.2
    assert 0.005 < float(np.sqrt(np.mean(samples**2))) < 1.0


def test_ensure_testbed_reuses_and_refuses_a_different_config(
    tiny_testbed: Testbed,
) -> None:
    again = ensure_testbed(tiny_testbed.config, tiny_testbed.root)
    assert again.config == tiny_testbed.config
    with pytest.raises(ValueError, match="holds a testbed with settings"):
        ensure_testbed(preset("tiny", seed=5), tiny_testbed.root)


def test_missing_or_foreign_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="generate one with"):
        load_testbed(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="expected 'edgecloud-testbed/1'"):
        load_testbed(tmp_path)


def test_parallel_generation_spawns_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: record the pool's start method. A forked worker inherits the
    # caller's gRPC objects, whose finalizer then hangs the worker (seen in CI
    # after the transport tests; a SuperNode calling ensure_testbed is the same)
    used: list[str] = []
    real = generate_module.ProcessPoolExecutor

    def recording(*args: Any, **kwargs: Any) -> Any:
        used.append(kwargs["mp_context"].get_start_method())
        return real(*args, **kwargs)

    monkeypatch.setattr(generate_module, "ProcessPoolExecutor", recording)
    cfg = preset("tiny", num_cameras=2, held_out_cameras=0, duration_s=1.0)

    # Execute
    testbed, _ = generate_testbed(cfg, tmp_path, workers=2, progress=False)

    # Assert
    assert used == ["spawn"]
    assert len(testbed.cameras) == 2
