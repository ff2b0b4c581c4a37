"""PacketGame unit-test fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_torch_thread() -> Iterator[None]:
    """Run each test on one intra-op thread, then restore the previous count.

    On a 2-core machine shared with other processes, two OpenMP threads wait on
    each other: a 0.1 s training run took 3 s.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
