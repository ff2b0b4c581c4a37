"""A tiny generated testbed for the black-box model tests."""

from __future__ import annotations

import pytest

from edgecloud.data.testbed import Testbed, generate_testbed, preset


@pytest.fixture(scope="session")
def tiny_testbed(tmp_path_factory: pytest.TempPathFactory) -> Testbed:
    """3 cameras x 24 s at 160x120, H.264 with B-frames (camera 2 held out)."""
    root = tmp_path_factory.mktemp("testbed") / "tiny"
    testbed, _ = generate_testbed(preset("tiny"), root, progress=False)
    return testbed
