"""Lossy compression of tensors sent over the network (no flwr import)."""

from edgecloud.compression.quantization import (
    dequantize,
    dequantize_per_channel,
    quantize_per_channel,
    quantize_symmetric,
    quantized_dtype,
)

__all__ = [
    "dequantize",
    "dequantize_per_channel",
    "quantize_per_channel",
    "quantize_symmetric",
    "quantized_dtype",
]
