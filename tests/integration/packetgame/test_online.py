"""The online PacketGame loop on a tiny testbed with a cheap stand-in black box."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pytest
import torch

from edgecloud.data.testbed import CameraVideo, generate_testbed, preset
from edgecloud.data.testbed.labels import FrameLabel
from edgecloud.data.testbed.readers import UNREADABLE, PacketInfo
from edgecloud.packetgame import (
    DEFAULT_RESULT,
    POLICIES,
    ContextualPredictor,
    DecodeCosts,
    OnlineResult,
    calibrate_decode_costs,
    count_changed,
    evaluation,
    make_policy,
    reference_outputs,
    run_online,
    train_predictor,
)

# Fixed units, not timings: the decisions (and so the asserts) are deterministic.
COSTS = DecodeCosts(intra=4.0, predicted=1.0, bidirectional=0.7)
BUDGET = 4.0  # 3 streams; decoding everything costs about 3.8 a round on average
WINDOW = 5


class BrightnessModel:
    """Stand-in black box: the mean brightness bucket (it moves at day/night)."""

    def __call__(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
        """``(N, H, W, 3)`` uint8 -> ``(N,)`` class indices."""
        return (frames.mean(axis=(1, 2, 3)) // 8).astype(np.int64)


MODEL = BrightnessModel()


@dataclass(frozen=True)
class Bed:
    """The shared testbed, its reference outputs and trained predictors."""

    cameras: tuple[CameraVideo, ...]
    references: list[npt.NDArray[np.int64]]
    predictor: ContextualPredictor
    neutral_predictor: ContextualPredictor
    short: CameraVideo  # a camera whose stream ends after half the rounds


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Bed:
    cfg = preset("tiny", num_cameras=3, held_out_cameras=1, duration_s=6.0)
    testbed, _ = generate_testbed(
        cfg, tmp_path_factory.mktemp("tb"), workers=1, progress=False
    )
    short_cfg = preset("tiny", num_cameras=1, held_out_cameras=0, duration_s=3.0)
    short, _ = generate_testbed(
        short_cfg, tmp_path_factory.mktemp("short"), workers=1, progress=False
    )
    train = [c for c in testbed.cameras if c.split == "train"]
    return Bed(
        cameras=testbed.cameras,
        references=[reference_outputs(c, MODEL) for c in testbed.cameras],
        predictor=train_predictor(train, MODEL, count_changed, WINDOW, epochs=10),
        neutral_predictor=train_predictor(
            train, MODEL, count_changed, WINDOW, epochs=10, neutral=True
        ),
        short=short.camera(0),
    )


def _run(
    bed: Bed, name: str, budget: float = BUDGET, infer: str = "model"
) -> OnlineResult:
    policy = make_policy(
        name,
        len(bed.cameras),
        budget=budget,
        costs=COSTS,
        window=WINDOW,
        predictor=bed.neutral_predictor if name == "contextual" else bed.predictor,
        references=bed.references,
    )
    return run_online(
        bed.cameras,
        MODEL,
        count_changed,
        policy,
        budget,
        COSTS,
        references=bed.references,
        infer=infer,  # type: ignore[arg-type]
    )


def test_decode_all_serves_the_reference_exactly(bed: Bed) -> None:
    # Execute
    result = _run(bed, "decode-all")

    # Assert: the gated frames are the true frames (same model outputs), nothing
    # dropped, every frame decoded and nothing saved
    assert result.accuracy == 1.0
    assert result.saved == pytest.approx(0.0, abs=1e-12)
    assert result.dropped_frames == 0
    assert result.frames_decoded == result.frames == 3 * 60
    assert result.inferences == result.frames
    assert result.rounds == 60
    assert result.decode_seconds > 0.0
    for served, ref in zip(result.served, bed.references, strict=True):
        np.testing.assert_array_equal(served, ref)


def test_every_policy_keeps_the_budget_and_the_oracle_is_best(bed: Bed) -> None:
    # Execute
    results = {name: _run(bed, name) for name in POLICIES}

    # Assert
    budgeted = [n for n in POLICIES if n not in ("decode-all", "reducto")]
    for name in budgeted:
        r = results[name]
        assert r.spent_per_round.max() <= BUDGET, name
        assert r.dropped_frames == 0, name
        assert 0.0 < r.saved <= 1.0, name
        assert r.spent == pytest.approx(r.spent_per_round.sum())
        assert r.accuracy <= results["oracle"].accuracy, name
    assert results["oracle"].accuracy > results["random"].accuracy
    # Reducto decodes every frame (saves nothing) and skips inferences only
    reducto = results["reducto"]
    assert reducto.saved == pytest.approx(0.0, abs=1e-12)
    assert reducto.frames_decoded == reducto.frames
    assert reducto.inferences < reducto.frames


@pytest.mark.parametrize("name", ["random", "packetgame", "oracle"])
def test_reference_results_equal_inferring_the_gated_frames(
    bed: Bed, name: str
) -> None:
    # Execute: the same policy with the model on the decoded frames, and with
    # each decoded frame's result read from the reference run
    inferred = _run(bed, name)
    looked_up = _run(bed, name, infer="reference")

    # Assert: bit-identical frames make the two the same run
    assert looked_up.accuracy == inferred.accuracy
    assert looked_up.spent == inferred.spent
    for a, b in zip(looked_up.served, inferred.served, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(looked_up.log.chosen, inferred.log.chosen)


def test_reference_results_are_refused_for_a_pixel_filter(bed: Bed) -> None:
    with pytest.raises(ValueError, match="expected infer='model'"):
        _run(bed, "reducto", infer="reference")


def test_the_round_log_holds_the_decoded_packets_labels(bed: Bed) -> None:
    # Execute
    result = _run(bed, "temporal")

    # Assert: labels exactly where a packet was decoded (here: no B-frame delay
    # leaves a chosen frame undecoded at the end), each in {0, 1}
    log = result.log
    assert log.sizes.shape == log.labels.shape == (result.rounds, 3)
    decoded = np.isfinite(log.labels)
    assert np.all(decoded[log.chosen])
    assert set(np.unique(log.labels[decoded])) <= {0.0, 1.0}
    assert log.is_intra[0].all()  # every stream starts with an I picture


def test_a_budget_below_any_packet_decodes_nothing(bed: Bed) -> None:
    # Execute: 0.5 < the cheapest picture (0.7)
    result = _run(bed, "packetgame", budget=0.5)

    # Assert: the default is served everywhere, without errors
    assert result.frames_decoded == 0
    assert result.saved == 1.0
    for served in result.served:
        assert np.all(served == DEFAULT_RESULT)
    expected = np.mean(np.concatenate(bed.references) == DEFAULT_RESULT)
    assert result.accuracy == pytest.approx(expected)


def test_a_stream_that_ends_early_drops_out(bed: Bed) -> None:
    # Prepare: a 60-frame and a 30-frame stream
    cameras = [bed.cameras[0], bed.short]
    policy = make_policy("temporal", 2, window=WINDOW)

    # Execute
    result = run_online(cameras, MODEL, count_changed, policy, 3.0, COSTS)

    # Assert
    long, short = result.per_stream
    assert result.rounds == 60
    assert (long.frames, short.frames) == (60, 30)
    assert not result.log.active[30:, 1].any()
    assert not result.log.chosen[30:, 1].any()
    assert result.spent_per_round.max() <= 3.0


def test_max_rounds_stops_early(bed: Bed) -> None:
    # Execute
    policy = make_policy("random", 3)
    result = run_online(
        bed.cameras,
        MODEL,
        count_changed,
        policy,
        BUDGET,
        COSTS,
        max_rounds=7,
        references=bed.references,
    )

    # Assert
    assert result.rounds == 7
    assert result.frames <= 3 * 7


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (-1.0, "budget is -1.0"),  # invalid: negative
        (float("nan"), "budget is nan"),  # invalid: not finite
    ],
)
def test_a_bad_budget_is_refused(bed: Bed, budget: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_online(
            bed.cameras,
            MODEL,
            count_changed,
            make_policy("random", 3),
            budget,
            COSTS,
            references=bed.references,
        )


def test_an_unknown_policy_name_is_refused() -> None:
    with pytest.raises(ValueError, match="'nonsense' unknown"):
        make_policy("nonsense", 3)


def test_calibration_gives_positive_costs_per_picture_type(
    bed: Bed, tmp_path: Path
) -> None:
    # Prepare: a VP9 stream has no B pictures
    cfg = preset("tiny", num_cameras=1, held_out_cameras=0, duration_s=2.0, codec="vp9")
    vp9, _ = generate_testbed(cfg, tmp_path, workers=1, progress=False)

    # Execute
    costs = calibrate_decode_costs(bed.cameras[:1], max_packets=40)
    vp9_costs = calibrate_decode_costs(vp9.cameras, max_packets=40)

    # Assert
    assert min(costs.intra, costs.predicted, costs.bidirectional) > 0.0
    assert vp9_costs.bidirectional == vp9_costs.predicted
    with pytest.raises(ValueError, match="max_packets is 0"):
        calibrate_decode_costs(bed.cameras[:1], max_packets=0)


def test_a_token_bucket_lets_a_small_budget_pay_for_an_i_picture(bed: Bed) -> None:
    # Prepare: 0.5 a round, below any I picture (4.0): nothing decodes strictly
    def run(burst: float | None) -> OnlineResult:
        return run_online(
            bed.cameras,
            MODEL,
            count_changed,
            make_policy("oracle", 3, references=bed.references),
            0.5,
            COSTS,
            references=bed.references,
            infer="reference",
            burst=burst,
        )

    # Execute
    strict, bucket = run(None), run(4.5)

    # Assert: the bucket saves up for I pictures and spends at most what it holds
    assert strict.frames_decoded == 0
    assert bucket.frames_decoded > 0
    assert bucket.spent_per_round.max() <= 4.5
    assert bucket.spent <= 0.5 * bucket.rounds + 1e-9
    assert bucket.accuracy > strict.accuracy


def test_a_bucket_smaller_than_the_budget_is_refused(bed: Bed) -> None:
    with pytest.raises(ValueError, match=r"burst is 1\.0; expected a finite number"):
        run_online(
            bed.cameras,
            MODEL,
            count_changed,
            make_policy("random", 3),
            2.0,
            COSTS,
            references=bed.references,
            burst=1.0,
        )


def test_budget_curves_score_the_second_half_only(bed: Bed) -> None:
    # Execute
    points = evaluation.budget_curve(
        "brightness",
        bed.cameras,
        bed.references,
        count_changed,
        COSTS,
        ["random", "packetgame", "reducto", "oracle"],
        [0.3, 0.8],
        predictors=evaluation.Predictors(bed.predictor, bed.neutral_predictor),
        score_from=30,
        model=MODEL,
    )

    # Assert: decode-all and Reducto once, the others at each budget
    by = {(p.policy, p.fraction): p for p in points}
    assert len(points) == 2 + 3 * 2
    assert by["decode-all", 1.0].accuracy == 1.0
    assert by["decode-all", 1.0].saved == pytest.approx(0.0)
    assert by["reducto", 1.0].saved == pytest.approx(0.0)
    for fraction in (0.3, 0.8):
        assert by["oracle", fraction].accuracy >= by["random", fraction].accuracy
        assert 0.0 <= by["packetgame", fraction].saved <= 1.0
    assert {p.rounds for p in points} == {60}


def test_training_regimes_and_held_out_scoring(bed: Bed) -> None:
    # Prepare: each training camera is one edge server; the held-out one scored
    train = [c for c in bed.cameras if c.split == "train"]
    test = [c for c in bed.cameras if c.split != "train"]
    refs = {c.camera_id: r for c, r in zip(bed.cameras, bed.references, strict=True)}

    # Execute
    regimes = evaluation.train_regimes(
        [[c] for c in train],
        [[refs[c.camera_id]] for c in train],
        count_changed,
        window=WINDOW,
        epochs=2,
        fed_rounds=2,
        local_epochs=1,
    )
    accuracy, saved = evaluation.gated_accuracy(
        regimes.federated,
        test,
        [refs[c.camera_id] for c in test],
        count_changed,
        COSTS,
        0.5,
        window=WINDOW,
    )

    # Assert
    assert len(regimes.local) == len(train)
    assert 0.0 <= accuracy <= 1.0 and 0.0 < saved < 1.0


class _Tampered(CameraVideo):
    """A camera whose packet ``index`` is damaged: zeroed bytes or bad headers."""

    def __init__(self, base: CameraVideo, index: int, how: str) -> None:
        self.__dict__.update(base.__dict__)
        self._index, self._how = index, how

    def packets(
        self, unreadable: Literal["raise", "mark"] = "raise"
    ) -> Iterator[tuple[PacketInfo, FrameLabel]]:
        for k, (packet, label) in enumerate(super().packets(unreadable)):
            if k == self._index and self._how == "zeroed":
                half = len(packet.data) // 2
                data = bytes(half) + packet.data[half:]
                packet = dataclasses.replace(packet, data=data)
            elif k == self._index:  # what the reader yields for bad headers
                packet = dataclasses.replace(
                    packet, picture_type=UNREADABLE, random_access=False
                )
            yield packet, label


@pytest.mark.parametrize("how", ["zeroed", "unreadable"])
def test_a_damaged_packet_degrades_one_stream_and_never_serves_a_wrong_frame(
    bed: Bed, how: str
) -> None:
    # Prepare: stream 0's 5th packet (a reference picture) is damaged
    cameras = [_Tampered(bed.cameras[0], 4, how), *bed.cameras[1:]]

    # Execute: decode everything that can be decoded
    result = run_online(
        cameras,
        MODEL,
        count_changed,
        make_policy("decode-all", 3),
        0.0,
        COSTS,
        references=bed.references,
    )

    # Assert: the loop finishes; the damaged GOP of stream 0 is skipped up to
    # its next key frame; no decoded frame differs from the full decode's
    assert result.rounds == 60
    assert (result.decode_failures, result.unreadable_packets) == (
        (1, 0) if how == "zeroed" else (0, 1)
    )
    damaged, *others = result.per_stream
    assert damaged.frames_decoded < damaged.frames
    assert all(s.accuracy == 1.0 for s in others)
    for served, ref in zip(result.served[1:], bed.references[1:], strict=True):
        np.testing.assert_array_equal(served, ref)
    assert 0.5 < damaged.accuracy < 1.0
