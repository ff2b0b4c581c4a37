"""One tiny testbed with a trained person counter, built once per test session.

The client tests here and the e2e simulation both use it: it is generated under
the session's base temp directory on first use and found there afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from edgecloud.data.testbed import generate_testbed, load_testbed, preset
from edgecloud.models.blackbox_training import BlackBoxTraining, train_all

# 6 s at 10 fps: 60 frames per camera; cameras 0 and 1 train, 2 is held out.
FRAMES = 60
_READY = "infi-ready"


def tiny_infi_testbed(factory: pytest.TempPathFactory) -> Path:
    """The session's tiny testbed with ``models/person-counter`` (built once).

    Six epochs on every 2nd frame give a counter whose outputs on the training
    cameras are about half 0 (redundant) and half not: both skip labels occur.
    """
    root = factory.getbasetemp() / "infi-testbed"
    if (root / _READY).is_file():
        return root
    cfg = preset("tiny", num_cameras=3, held_out_cameras=1, duration_s=6.0)
    generate_testbed(cfg, root, workers=1, progress=False)
    with one_torch_thread():
        train_all(
            load_testbed(root),
            root / "models",
            names=("person-counter",),
            settings=BlackBoxTraining(epochs=6),
            every=2,
            progress=False,
        )
    (root / _READY).write_text("")
    return root


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread inside, the previous count restored after.

    Batches of a few 40x30 frames give a thread nothing to share; on a busy
    2-core box two threads spin against each other and a filter step ran ~80x
    slower than on one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
