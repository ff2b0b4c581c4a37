"""Argument checks shared across the Flower-free libraries (one-line ValueErrors)."""

from __future__ import annotations

import math

import numpy as np


def check_positive_int(name: str, value: object) -> None:
    """Raise a ValueError unless ``value`` is an integer >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} is {value!r}; expected a positive integer")
    if value < 1:
        raise ValueError(f"{name} is {value}; expected a positive integer")


def check_real(name: str, value: object) -> float:
    """``value`` as a float (``inf`` allowed), or a ValueError on NaN / non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"{name} is {value!r}; expected a number")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name} is nan; expected a number")
    return number
