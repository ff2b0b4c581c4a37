"""PacketGame, 2 edge servers: train the predictor, gate; simulation and deployment."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecloud.capabilities.packetgame import keys as k
from edgecloud.capabilities.packetgame.predictor_records import (
    save_predictor,
    to_arrays,
)
from edgecloud.data.testbed import generate_testbed, load_testbed, preset
from edgecloud.data.testbed.__main__ import main
from edgecloud.deploy.flwr_cli import FINISHED_COMPLETED
from edgecloud.local_simulation import run_local_simulations
from edgecloud.models import load_blackboxes
from edgecloud.packetgame import count_changed, train_predictor
from tests.e2e.helpers import local_federation, read_outputs, run_on

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 cameras (2 train, 1 held out) x 6 s and one tiny black box."""
    root = tmp_path_factory.mktemp("packetgame") / "testbed"
    cfg = preset("tiny", num_cameras=3, held_out_cameras=1, duration_s=6.0)
    generate_testbed(cfg, root, workers=1, progress=False)
    code = main(
        [
            "train-models",
            "--testbed", str(root),
            "--epochs", "1",
            "--every", "6",
            "--models", "person-counter",
            "--out", str(root / "models"),
        ]
    )  # fmt: skip
    assert code == 0
    return root


def test_train_rounds_then_analytics_complete_with_metrics(
    testbed: Path, tmp_path: Path
) -> None:
    # Prepare: one simulation, a train run (2 rounds) and an analytics run; the
    # clients see the shared keys, the runs differ in server-only keys. The
    # analytics run gates with a predictor trained here on the training cameras
    # (runs are validated before any starts, so not the train run's file).
    testbed_ = load_testbed(testbed)
    model = load_blackboxes(testbed / "models")["person-counter"]
    trained = train_predictor(
        [c for c in testbed_.cameras if c.split == "train"],
        model,
        count_changed,
        epochs=2,
        size=(160, 120),
    )
    predictor = tmp_path / "trained.pt"
    save_predictor(to_arrays(trained), predictor)
    runs = {
        "train": {"output-dir": str(tmp_path / "train")},
        "analytics": {
            "packetgame.mode": "analytics",
            "packetgame.predictor": str(predictor),
            "output-dir": str(tmp_path / "analytics"),
        },
    }
    shared = {
        "capability": "packetgame",
        "num-server-rounds": 2,
        "packetgame.testbed": str(testbed),
        "packetgame.model": "person-counter",
        "packetgame.epochs": 2,
        "packetgame.rounds-per-analytics": 40,
        "packetgame.budget": 0.5,
    }

    # Execute
    errors = run_local_simulations(runs, shared=shared, num_supernodes=2)

    # Assert: both completed; FedAvg rounds 1-2 then the analytics round 3
    assert errors == {"train": None, "analytics": None}
    train = read_outputs(tmp_path / "train", checkpoints=False)
    assert train["status"] == "completed"
    assert [r["round"] for r in train["rounds"]] == [1, 2, 3]
    for record in train["rounds"][:2]:
        assert record["train_replies"] == 2 and record["train_loss"] is not None
        assert 0.0 <= record["extra"][k.POSITIVE_RATE] <= 1.0
    final = train["rounds"][2]
    assert final["train_replies"] == 2  # each node gated its own camera
    assert 0.0 <= final["federated_accuracy"] <= 1.0
    assert final["extra"][k.FRAMES] == 2 * 40  # one camera per node, 40 rounds
    # one stream per node: a round's budget is below one I picture, which the
    # token bucket saves up for
    assert final["extra"][k.FRAMES_DECODED] > 0
    assert 0.0 <= final["extra"][k.SAVED] < 1.0
    assert final["extra"][k.DECISIONS_PER_SECOND] > 0
    assert (tmp_path / "train" / k.PREDICTOR_FILE).is_file()
    analytics = read_outputs(tmp_path / "analytics", checkpoints=False)
    assert analytics["status"] == "completed"
    assert [r["round"] for r in analytics["rounds"]] == [1]
    assert analytics["summary"][k.NODES] == 2


def test_edge_servers_train_the_predictor_on_a_real_deployment(
    testbed: Path, tmp_path: Path
) -> None:
    # Prepare: a real SuperLink and two SuperNodes on 127.0.0.1, each an edge
    # server with its own camera from --node-config
    out = tmp_path / "outputs"

    # Execute: one FedAvg round of the predictor, then the analytics round
    with local_federation(
        tmp_path,
        num_supernodes=2,
        per_node_config=[{"cameras": "0"}, {"cameras": "1"}],
    ) as federation:
        status = run_on(
            federation,
            f'capability="packetgame" num-server-rounds=1 '
            f'packetgame.testbed="{testbed}" packetgame.model="person-counter" '
            f"packetgame.epochs=1 packetgame.rounds-per-analytics=20 "
            f'output-dir="{out}"',
        )

    # Assert: completed; both edge servers trained and gated their own camera
    assert status["status"] == FINISHED_COMPLETED, status
    results = read_outputs(out, checkpoints=False)
    train, analytics = results["rounds"]
    assert train["train_replies"] == 2
    assert analytics["extra"][k.FRAMES] == 2 * 20
    assert (out / k.PREDICTOR_FILE).is_file()
