"""Symmetric per-tensor quantization: error bound, edge cases, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from edgecloud.compression import dequantize, quantize_symmetric


@pytest.mark.parametrize(("bits", "dtype"), [(8, np.int8), (16, np.int16)])
def test_round_trip_error_is_at_most_half_a_step(bits: int, dtype: type) -> None:
    # Prepare
    values = np.random.default_rng(0).normal(size=(64, 33)).astype(np.float32)

    # Execute
    codes, scale = quantize_symmetric(values, bits)
    restored = dequantize(codes, scale)

    # Assert
    assert codes.dtype == dtype
    assert np.abs(codes).max() <= 2 ** (bits - 1) - 1
    assert scale == pytest.approx(np.abs(values).max() / (2 ** (bits - 1) - 1))
    assert np.abs(restored - values).max() <= scale / 2 + 1e-6


def test_all_zero_tensor_round_trips_exactly() -> None:
    codes, scale = quantize_symmetric(np.zeros((3, 3), dtype=np.float32), 8)
    assert scale == 1.0
    np.testing.assert_array_equal(dequantize(codes, scale), 0.0)


def test_empty_tensor() -> None:
    codes, scale = quantize_symmetric(np.zeros((0,), dtype=np.float32), 8)
    assert codes.shape == (0,) and scale == 1.0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN or infinity"):
        quantize_symmetric(np.array([1.0, bad], dtype=np.float32), 8)


@pytest.mark.parametrize("bits", [0, 4, 32])  # only 8 and 16 have an integer container
def test_unsupported_bits(bits: int) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        quantize_symmetric(np.ones(2, dtype=np.float32), bits)
