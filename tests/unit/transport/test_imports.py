"""The transport is a plain library: importing it does not pull in flwr."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_load_flwr() -> None:
    # Execute: a fresh interpreter, so nothing is already imported
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, edgecloud.transport; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'flwr'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    # Assert
    assert out == "[]"
