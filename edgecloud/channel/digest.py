"""A digest of named arrays, so weights sent outside a frame can be authenticated."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt


def weights_digest(state: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[np.uint8]:
    """SHA-256 over sorted keys, dtypes, shapes and bytes, as a ``(32,)`` uint8 array.

    The device weights travel in a plain ArrayRecord; their digest travels inside
    the sealed frame, so a changed weight fails verification like a changed frame.
    """
    digest = hashlib.sha256()
    for key in sorted(state):
        value = np.ascontiguousarray(state[key])
        digest.update(f"{key}|{value.dtype}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return np.frombuffer(digest.digest(), dtype=np.uint8).copy()
