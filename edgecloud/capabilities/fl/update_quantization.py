"""Quantized client updates (the edge-FL tutorial): integer deltas + one scale each.

Wire format of a quantized ``train`` reply (both sides live in this module):

* ``arrays``: the same keys as the model; floating tensors hold integer codes of
  ``trained - received`` (``int8`` for 8 bits), other tensors are sent unchanged;
* ``quantization`` (ConfigRecord): ``bits``, ``keys`` (the quantized keys, in order)
  and ``scales`` (one float per quantized key).

The server reconstructs ``received + codes * scale`` before any aggregation, so every
Flower strategy (and DP wrapper) sees ordinary full-precision weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO, WARNING
from typing import cast

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
)
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from edgecloud.capabilities.fl.delegating import DelegatingStrategy
from edgecloud.capabilities.fl.keys import (
    FULL_PRECISION_BYTES,
    QUANT_BITS,
    QUANT_KEYS,
    QUANT_SCALES,
    QUANTIZATION,
    QUANTIZED_BYTES,
    UPDATE_QUANTIZATION_BITS,
)
from edgecloud.compression import dequantize, quantize_symmetric, quantized_dtype
from edgecloud.exceptions import InconsistentRepliesError
from edgecloud.workflow.keys import ARRAYS, CONFIG


def encode_update(
    received: ArrayRecord, trained: ArrayRecord, bits: int
) -> tuple[ArrayRecord, ConfigRecord]:
    """Quantize ``trained - received`` per floating tensor; see the module docstring."""
    if list(received.keys()) != list(trained.keys()):
        raise InconsistentRepliesError(
            "trained arrays do not have the keys of the received arrays; cannot "
            "encode a delta"
        )
    arrays: dict[str, Array] = {}
    keys: list[str] = []
    scales: list[float] = []
    for key, trained_array in trained.items():
        new = trained_array.numpy()
        if not np.issubdtype(new.dtype, np.floating):
            arrays[key] = Array(new)
            continue
        delta = new.astype(np.float32) - received[key].numpy().astype(np.float32)
        codes, scale = quantize_symmetric(delta, bits)
        arrays[key] = Array(codes)
        keys.append(key)
        scales.append(scale)
    config = ConfigRecord({QUANT_BITS: bits, QUANT_KEYS: keys, QUANT_SCALES: scales})
    return ArrayRecord(arrays), config


def decode_update(
    received: ArrayRecord, encoded: ArrayRecord, quantization: ConfigRecord
) -> ArrayRecord:
    """Rebuild full-precision weights from an encoded reply; validates everything first.

    Raises
    ------
    InconsistentRepliesError
        If bits, keys, scales, dtypes or shapes do not match what was sent.
    """
    bits = quantization.get(QUANT_BITS)
    keys = quantization.get(QUANT_KEYS)
    scales = quantization.get(QUANT_SCALES)
    if not isinstance(bits, int) or isinstance(bits, bool):
        raise InconsistentRepliesError(f"quantization bits is {bits!r}; expected int")
    try:
        dtype = np.dtype(quantized_dtype(bits))
    except ValueError as err:
        raise InconsistentRepliesError(str(err)) from err
    if not isinstance(keys, list) or not isinstance(scales, list):
        raise InconsistentRepliesError("quantization keys/scales must be lists")
    if len(keys) != len(scales) or len(set(keys)) != len(keys):
        raise InconsistentRepliesError(
            f"{len(keys)} quantized keys but {len(scales)} scales (or duplicates)"
        )
    if list(encoded.keys()) != list(received.keys()):
        raise InconsistentRepliesError("reply keys differ from the keys sent")
    scale_of = dict(zip(cast(list[str], keys), cast(list[float], scales), strict=True))
    decoded: dict[str, Array] = {}
    for key, array in encoded.items():
        sent = received[key]
        if tuple(array.shape) != tuple(sent.shape):
            raise InconsistentRepliesError(
                f"array {key!r} has shape {tuple(array.shape)}; expected "
                f"{tuple(sent.shape)}"
            )
        if key not in scale_of:
            if array.dtype != sent.dtype:
                raise InconsistentRepliesError(
                    f"unquantized array {key!r} has dtype {array.dtype}; expected "
                    f"{sent.dtype}"
                )
            decoded[key] = array
            continue
        scale = scale_of[key]
        if array.dtype != str(dtype) or not (
            isinstance(scale, float) and np.isfinite(scale) and scale >= 0
        ):
            raise InconsistentRepliesError(
                f"array {key!r}: dtype {array.dtype} / scale {scale!r}; expected "
                f"{dtype} and a finite non-negative scale"
            )
        base = sent.numpy()
        decoded[key] = Array(
            (base + dequantize(array.numpy(), scale)).astype(base.dtype)
        )
    return ArrayRecord(decoded)


def quantize_update_mod(
    msg: Message, ctxt: Context, call_next: ClientAppCallable
) -> Message:
    """Client mod: quantize the train reply if the server asked for it.

    Put it first in ``ClientApp(mods=[...])`` so it runs last on the reply, after
    any clipping mod, and the server can undo it before clipping is checked.
    """
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, ctxt)
    bits = int(
        cast(int, msg.content.config_records[CONFIG].get(UPDATE_QUANTIZATION_BITS, 0))
    )
    received = msg.content.array_records[ARRAYS].copy() if bits else None
    reply = call_next(msg, ctxt)
    if not bits or reply.has_error():
        return reply
    assert received is not None  # set above whenever bits != 0
    arrays, quantization = encode_update(
        received, reply.content.array_records[ARRAYS], bits
    )
    reply.content[ARRAYS] = arrays
    reply.content[QUANTIZATION] = quantization
    return reply


def _encoded_parts(reply: Message) -> tuple[ArrayRecord, ConfigRecord]:
    """The reply's codes and quantization record (a reply lacking one is malformed)."""
    arrays = reply.content.array_records.get(ARRAYS)
    quantization = reply.content.config_records.get(QUANTIZATION)
    if arrays is None or quantization is None:
        raise InconsistentRepliesError(
            f"reply lacks the '{ARRAYS}' array record or the '{QUANTIZATION}' config "
            "record of a quantized update"
        )
    return arrays, quantization


class QuantizedUpdates(DelegatingStrategy):
    """Ask clients for quantized updates and decode them before aggregation.

    Parameters
    ----------
    inner : Strategy
        The strategy that aggregates the decoded (full-precision) replies.
    bits : int
        8 or 16: width of the integer codes.

    Notes
    -----
    The client must run :func:`quantize_update_mod`. A reply that fails to decode
    is logged with its node id and left out of the round, like a failed client.
    The aggregated train metrics gain ``quantized-update-bytes`` and
    ``full-precision-update-bytes`` (ArrayRecord bytes before/after decoding).
    """

    def __init__(self, inner: Strategy, bits: int) -> None:
        super().__init__(inner)
        quantized_dtype(bits)  # validates bits
        self.bits = bits
        self._sent: dict[int, ArrayRecord] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Remember what was sent and ask clients to quantize their updates."""
        self._sent = {server_round: arrays}
        config[UPDATE_QUANTIZATION_BITS] = self.bits
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Decode quantized replies, then aggregate them with the inner strategy."""
        sent = self._sent.get(server_round)
        if sent is None:
            raise InconsistentRepliesError(
                f"no arrays were sent in round {server_round}; cannot decode replies"
            )
        decoded: list[Message] = []
        quantized_bytes = full_bytes = 0
        for reply in replies:
            if reply.has_error():
                decoded.append(reply)
                continue
            try:
                arrays = decode_update(sent, *_encoded_parts(reply))
            except InconsistentRepliesError as err:
                log(
                    WARNING,
                    "round %s: dropping undecodable quantized reply from node %s: %s",
                    server_round,
                    reply.metadata.src_node_id,
                    err,
                )
                continue
            quantized_bytes += reply.content.array_records[ARRAYS].count_bytes()
            full_bytes += arrays.count_bytes()
            reply.content[ARRAYS] = arrays
            del reply.content[QUANTIZATION]
            decoded.append(reply)
        aggregated, metrics = super().aggregate_train(server_round, decoded)
        if full_bytes:
            log(
                INFO,
                "round %s: quantized updates %d B instead of %d B (%.2fx smaller)",
                server_round,
                quantized_bytes,
                full_bytes,
                full_bytes / max(quantized_bytes, 1),
            )
            metrics = MetricRecord(dict(metrics or {}))
            metrics[QUANTIZED_BYTES] = quantized_bytes
            metrics[FULL_PRECISION_BYTES] = full_bytes
        return aggregated, metrics
