"""Symmetric linear quantization, one scale per tensor (the edge-FL tutorial's int8).

Hand-written because torch's quantization API works on tensors inside modules and
returns torch-specific quantized types, while the wire format here is a plain
integer array plus one float scale that NumPy on the receiving side can decode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

SUPPORTED_BITS = (8, 16)


def quantized_dtype(bits: int) -> type[np.int8] | type[np.int16]:
    """The smallest signed integer type holding ``bits``-bit codes."""
    if bits not in SUPPORTED_BITS:
        raise ValueError(
            f"quantization bits is {bits}; expected one of {SUPPORTED_BITS}"
        )
    return np.int8 if bits == 8 else np.int16


def quantize_symmetric(
    values: npt.NDArray[np.floating[Any]], bits: int
) -> tuple[npt.NDArray[np.signedinteger[Any]], float]:
    """Quantize to integers in ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]`` with one scale.

    Returns ``(codes, scale)`` with ``values ~= codes * scale``; the rounding error
    per element is at most ``scale / 2 = max|values| / (2 * (2^(bits-1) - 1))``.
    """
    dtype = quantized_dtype(bits)
    qmax = 2 ** (bits - 1) - 1
    amax = float(np.max(np.abs(values))) if values.size else 0.0
    if not np.isfinite(amax):
        raise ValueError("cannot quantize an array holding NaN or infinity")
    scale = amax / qmax if amax > 0.0 else 1.0
    codes: npt.NDArray[np.signedinteger[Any]] = np.clip(
        np.rint(values / scale), -qmax, qmax
    ).astype(dtype)
    return codes, float(scale)


def dequantize(
    codes: npt.NDArray[np.signedinteger[Any]], scale: float
) -> npt.NDArray[np.float32]:
    """Inverse of :func:`quantize_symmetric` (up to rounding)."""
    return (codes.astype(np.float32) * np.float32(scale)).astype(np.float32)


def quantize_per_channel(
    values: npt.NDArray[np.floating[Any]], bits: int, axis: int = 1
) -> tuple[npt.NDArray[np.signedinteger[Any]], npt.NDArray[np.float32]]:
    """Symmetric quantization with one scale per slice along ``axis``.

    The split-based FL notes' "layered" quantization: channels (or features) with
    small values keep their resolution instead of sharing the largest channel's step.

    Returns ``(codes, scales)`` with ``scales.shape == (values.shape[axis],)``.
    """
    dtype = quantized_dtype(bits)
    qmax = 2 ** (bits - 1) - 1
    if values.ndim == 0:
        raise ValueError("per-channel quantization needs an array with a channel axis")
    moved = np.moveaxis(values, axis, 0)  # (C, ...)
    flat = moved.reshape(moved.shape[0], -1)
    amax = np.max(np.abs(flat), axis=1) if flat.size else np.zeros(len(flat))
    if not np.all(np.isfinite(amax)):
        raise ValueError("cannot quantize an array holding NaN or infinity")
    scales = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = -1
    codes: npt.NDArray[np.signedinteger[Any]] = np.clip(
        np.rint(values / scales.reshape(shape)), -qmax, qmax
    ).astype(dtype)
    return codes, scales


def dequantize_per_channel(
    codes: npt.NDArray[np.signedinteger[Any]],
    scales: npt.NDArray[np.float32],
    axis: int = 1,
) -> npt.NDArray[np.float32]:
    """Inverse of :func:`quantize_per_channel` (up to rounding)."""
    shape = [1] * codes.ndim
    shape[axis] = -1
    return (codes.astype(np.float32) * scales.reshape(shape)).astype(np.float32)
