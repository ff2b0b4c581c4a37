"""Input checks shared by the PacketGame modules (ValueErrors naming the argument)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edgecloud.validation import check_positive_int

__all__ = ["as_bool_mask", "as_nonnegative", "check_budget", "check_positive_int"]


def as_bool_mask(
    name: str, value: npt.ArrayLike, num_streams: int
) -> npt.NDArray[np.bool_]:
    """``value`` as a ``(num_streams,)`` boolean array, or a ValueError naming it."""
    arr: npt.NDArray[Any] = np.asarray(value)
    if arr.shape != (num_streams,):
        raise ValueError(
            f"{name} has shape {arr.shape}; expected ({num_streams},) (num_streams)"
        )
    if arr.dtype != np.bool_:
        raise ValueError(f"{name} has dtype {arr.dtype}; expected bool")
    return arr


def as_nonnegative(
    name: str,
    value: npt.ArrayLike,
    shape: tuple[int, ...] | None = None,
    *,
    positive: bool = False,
) -> npt.NDArray[np.float64]:
    """``value`` as a float64 array of finite numbers >= 0 (> 0 with ``positive``).

    Raises a ValueError naming ``name``, the offending entry and what was expected on
    a shape mismatch (when ``shape`` is given), NaN, infinity or a negative entry.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} is {value!r}; expected an array of numbers") from err
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}; expected {shape}")
    low = "> 0" if positive else ">= 0"
    bad = ~np.isfinite(arr) | ((arr <= 0.0) if positive else (arr < 0.0))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        index = "[" + ", ".join(map(str, where)) + "]" if where else ""
        raise ValueError(
            f"{name}{index} is {arr[where]}; expected a finite number {low}"
        )
    return arr


def check_budget(budget: float) -> float:
    """``budget`` as a float, or a ValueError unless it is finite and >= 0."""
    try:
        value = float(budget)
    except (TypeError, ValueError) as err:
        raise ValueError(f"budget is {budget!r}; expected a number >= 0") from err
    if not np.isfinite(value) or value < 0.0:
        raise ValueError(f"budget is {value}; expected a finite number >= 0")
    return value
