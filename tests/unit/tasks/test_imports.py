"""Import cost: every ClientApp process imports the task registry, so keep it light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # Tasks never import flwr; the heavy data libraries load only when a task
        # loads that data (torchvision: CIFAR-10, flwr-datasets: label partitions,
        # PyAV: the testbed videos); transformers belongs to STIP alone.
        (
            "edgecloud.tasks",
            ("flwr", "torchvision", "flwr_datasets", "datasets", "transformers", "av"),
        ),
        # The black boxes are plain models: no flwr, and PyAV only to read videos.
        ("edgecloud.models", ("flwr", "torchvision", "flwr_datasets", "av")),
    ],
)
def test_importing_loads_no_flower_and_no_heavy_data_libraries(
    module: str, forbidden: tuple[str, ...]
) -> None:
    # Prepare: a fresh interpreter, as a ClientApp process starts
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"

    # Execute
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=300,
    )

    # Assert (the module itself shows that the listing is real)
    loaded = set(result.stdout.split())
    assert module in loaded
    assert sorted(loaded & set(forbidden)) == []
