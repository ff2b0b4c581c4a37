"""Tensor codecs for smashed data and gradients: fp32, fp16, bf16, int8 per channel.

A tensor travels as a small JSON-able description (name, codec, dtype, shape, byte
lengths) plus raw bytes: no pickle anywhere, and every length is checked against
the shape before a single byte is interpreted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from edgecloud.channel.errors import ChannelError
from edgecloud.compression import dequantize_per_channel, quantize_per_channel

CODECS = ("fp32", "fp16", "bf16", "int8")
# Integer tensors (labels) are always sent as they are, whatever the codec.
_RAW_DTYPES = {
    "int64": np.int64,
    "int32": np.int32,
    "uint8": np.uint8,
    "float32": np.float32,
}
_MAX_ELEMENTS = 1 << 28  # 1 GiB of float32: refuse absurd shapes before allocating


def _channel_axis(ndim: int) -> int:
    # (B, C, H, W) -> one scale per channel (the split-based FL notes' layered
    # quantization);
    # (B, F) flattened features -> one scale per sample: F scales per batch would
    # cost 4 bytes per feature, as much as the codes of a 4-sample batch.
    return 1 if ndim >= 3 else 0


def encode_tensor(
    name: str, array: npt.NDArray[Any], codec: str
) -> tuple[dict[str, Any], bytes]:
    """Describe and serialise one tensor; float tensors use ``codec``."""
    if codec not in CODECS:
        raise ValueError(
            f"codec {codec!r} unknown; expected one of {', '.join(CODECS)}"
        )
    array = np.ascontiguousarray(array)
    dtype = str(array.dtype)
    if dtype not in _RAW_DTYPES:
        raise ValueError(
            f"tensor {name!r} has dtype {dtype}; expected one of {sorted(_RAW_DTYPES)}"
        )
    if dtype != "float32" or codec == "fp32":
        return _meta(name, "raw", dtype, array.shape, 0), array.tobytes()
    if codec == "fp16":
        return _meta(name, "fp16", dtype, array.shape, 0), array.astype(
            np.float16
        ).tobytes()
    if codec == "bf16":
        # NumPy has no bfloat16; torch does the round-to-nearest-even conversion.
        bits = torch.from_numpy(array).to(torch.bfloat16).view(torch.int16).numpy()
        return _meta(name, "bf16", dtype, array.shape, 0), bits.tobytes()
    codes, scales = quantize_per_channel(array, 8, axis=_channel_axis(array.ndim))
    scale_bytes = scales.astype(np.float32).tobytes()
    meta = _meta(name, "int8", dtype, array.shape, len(scale_bytes))
    return meta, scale_bytes + codes.tobytes()


def decode_tensor(meta: dict[str, Any], data: bytes) -> npt.NDArray[Any]:
    """Inverse of :func:`encode_tensor`; every field and length is validated first.

    Raises
    ------
    ChannelError
        If the description is malformed or does not match the bytes.
    """
    try:
        codec, dtype = str(meta["codec"]), str(meta["dtype"])
        shape = tuple(int(d) for d in meta["shape"])
        scale_len = int(meta["scale_bytes"])
    except (KeyError, TypeError, ValueError) as err:
        raise ChannelError(f"malformed tensor description {meta!r}: {err}") from err
    if dtype not in _RAW_DTYPES or codec not in ("raw", "fp16", "bf16", "int8"):
        raise ChannelError(f"unsupported dtype/codec {dtype}/{codec}")
    if any(d < 0 for d in shape) or len(shape) > 8:
        raise ChannelError(f"invalid shape {shape}")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count > _MAX_ELEMENTS:
        raise ChannelError(f"shape {shape} too large")
    item = {
        "raw": np.dtype(_RAW_DTYPES[dtype]).itemsize,
        "fp16": 2,
        "bf16": 2,
        "int8": 1,
    }[codec]
    channels = shape[_channel_axis(len(shape))] if codec == "int8" and shape else 0
    expected_scales = 4 * channels
    if scale_len != expected_scales or len(data) != expected_scales + count * item:
        raise ChannelError(
            f"tensor {meta.get('name')!r}: {len(data)} bytes for shape {shape} and "
            f"codec {codec}; expected {expected_scales + count * item}"
        )
    if codec == "raw":
        return np.frombuffer(data, dtype=_RAW_DTYPES[dtype]).reshape(shape).copy()
    if codec == "fp16":
        return np.frombuffer(data, dtype=np.float16).reshape(shape).astype(np.float32)
    if codec == "bf16":
        bits = torch.from_numpy(np.frombuffer(data, dtype=np.int16).copy())
        return bits.view(torch.bfloat16).float().numpy().reshape(shape)
    scales = np.frombuffer(data[:scale_len], dtype=np.float32)
    if not np.all(np.isfinite(scales)) or np.any(scales < 0):
        raise ChannelError("quantization scales must be finite and non-negative")
    codes = np.frombuffer(data[scale_len:], dtype=np.int8).reshape(shape)
    return dequantize_per_channel(codes, scales, axis=_channel_axis(len(shape)))


def _meta(
    name: str, codec: str, dtype: str, shape: tuple[int, ...], scale_bytes: int
) -> dict[str, Any]:
    return {
        "name": name,
        "codec": codec,
        "dtype": dtype,
        "shape": list(shape),
        "scale_bytes": scale_bytes,
    }


@dataclass
class ErrorFeedback:
    """Carry each stream's compression error into its next message (EF-SGD style).

    ``compensate(key, x)`` returns ``x + residual[key]``; after encoding, ``update``
    stores ``compensated - decoded`` so that errors do not accumulate over steps.
    """

    residuals: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)

    def compensate(
        self, key: str, values: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """``values`` plus the error left over from the last message of ``key``."""
        residual = self.residuals.get(key)
        if residual is None or residual.shape != values.shape:
            return values
        return (values + residual).astype(np.float32)

    def update(
        self,
        key: str,
        compensated: npt.NDArray[np.float32],
        decoded: npt.NDArray[np.float32],
    ) -> None:
        """Remember what compression lost this time."""
        self.residuals[key] = (compensated - decoded).astype(np.float32)
