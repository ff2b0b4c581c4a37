"""Type aliases used across the package (defined once)."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

# Any NumPy array (tensors on the wire, model states, optimizer buffers).
NDArray = npt.NDArray[Any]
# A run-config / node-config value (what TOML and Flower's UserConfig allow).
Scalar = bool | int | float | str
