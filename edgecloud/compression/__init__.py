"""Lossy compression of tensors sent over the network (no flwr import)."""

from edgecloud.compression.quantization import (
    dequantize,
    quantize_symmetric,
    quantized_dtype,
)

__all__ = ["dequantize", "quantize_symmetric", "quantized_dtype"]
