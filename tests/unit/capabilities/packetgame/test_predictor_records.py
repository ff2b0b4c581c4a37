"""Saved predictors: they round-trip, and a bad file is refused naming the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecloud.capabilities.packetgame.predictor_records import (
    build_predictor,
    from_arrays,
    load_predictor,
    save_predictor,
    to_arrays,
)
from edgecloud.exceptions import ConfigError

KEY = "packetgame.predictor"


def test_a_saved_predictor_loads_with_the_same_weights(tmp_path: Path) -> None:
    # Prepare
    arrays = to_arrays(build_predictor(window=5, seed=3))
    save_predictor(arrays, tmp_path / "p.pt")

    # Execute
    loaded = from_arrays(load_predictor(tmp_path / "p.pt", KEY, window=5), 5)

    # Assert
    for name, value in loaded.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), arrays[name].numpy())


@pytest.mark.parametrize(
    ("content", "window", "message"),
    [
        # not a torch file at all: refused before anything is built
        (b"not a checkpoint", 5, "does not load as a torch state dict"),
        # a window of 2 has narrower kernels: the saved weights do not fit
        (None, 2, "same packetgame.window"),
    ],
)
def test_a_bad_predictor_file_is_refused_naming_the_key(
    tmp_path: Path, content: bytes | None, window: int, message: str
) -> None:
    # Prepare
    path = tmp_path / "p.pt"
    if content is None:
        save_predictor(to_arrays(build_predictor(window=5, seed=0)), path)
    else:
        path.write_bytes(content)

    # Execute / Assert
    with pytest.raises(ConfigError, match=f"'{KEY}'.*{message}"):
        load_predictor(path, KEY, window)
