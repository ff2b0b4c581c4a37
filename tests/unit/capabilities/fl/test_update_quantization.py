"""Quantized updates: encode/decode round trip, strict validation, wrapper behaviour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message
from flwr.serverapp.strategy import FedAvg

from edgecloud.capabilities.fl.update_quantization import (
    FULL_PRECISION_BYTES,
    QUANTIZED_BYTES,
    UPDATE_QUANTIZATION_BITS,
    QuantizedUpdates,
    decode_update,
    encode_update,
)
from edgecloud.exceptions import InconsistentRepliesError

rng = np.random.default_rng(0)
SENT = {
    "w": rng.normal(size=(20, 10)).astype(np.float32),
    "b": rng.normal(size=(10,)).astype(np.float32),
    "steps": np.array([3], dtype=np.int64),  # non-float tensors travel unchanged
}


def _trained() -> dict[str, np.ndarray[Any, Any]]:
    return {
        "w": SENT["w"] + 0.01 * rng.normal(size=(20, 10)).astype(np.float32),
        "b": SENT["b"] - 0.02,
        "steps": np.array([4], dtype=np.int64),
    }


def _record(arrays: dict[str, np.ndarray[Any, Any]]) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def test_round_trip_is_close_and_smaller() -> None:
    # Prepare
    trained = _trained()

    # Execute
    encoded, quant = encode_update(_record(SENT), _record(trained), 8)
    decoded = decode_update(_record(SENT), encoded, quant)

    # Assert
    assert encoded["w"].dtype == "int8"
    assert quant["keys"] == ["w", "b"]
    np.testing.assert_array_equal(decoded["steps"].numpy(), trained["steps"])
    for key in ("w", "b"):
        step = max(np.abs(trained[key] - SENT[key]).max() / 127, 1e-12)
        assert np.abs(decoded[key].numpy() - trained[key]).max() <= step / 2 + 1e-6
    # 1 byte per weight instead of 4, plus NumPy's fixed 128-byte header
    assert len(encoded["w"].data) == 128 + 200
    assert len(Array(trained["w"]).data) == 128 + 800


def _tamper(encoded: ArrayRecord, quant: ConfigRecord, case: str) -> None:
    if case == "wrong-shape":
        encoded["w"] = Array(np.zeros((10, 20), dtype=np.int8))
    elif case == "wrong-dtype":
        encoded["w"] = Array(np.zeros((20, 10), dtype=np.float32))
    elif case == "negative-scale":
        quant["scales"] = [-1.0, 0.1]
    elif case == "nan-scale":
        quant["scales"] = [float("nan"), 0.1]
    elif case == "missing-scale":
        quant["scales"] = [0.1]
    elif case == "bad-bits":
        quant["bits"] = 4
    elif case == "extra-key":
        encoded["z"] = Array(np.zeros(1, dtype=np.int8))
    elif case == "unquantized-dtype-changed":
        encoded["steps"] = Array(np.array([4.0], dtype=np.float64))


@pytest.mark.parametrize(
    "case",
    [
        "wrong-shape",  # shape differs from what was sent
        "wrong-dtype",  # float payload where int8 codes are declared
        "negative-scale",  # scales must be >= 0
        "nan-scale",  # and finite
        "missing-scale",  # one scale per quantized key
        "bad-bits",  # only 8 and 16 exist
        "extra-key",  # keys must equal the keys sent
        "unquantized-dtype-changed",  # raw tensors keep their dtype
    ],
)
def test_tampered_updates_are_rejected(case: str) -> None:
    # Prepare
    encoded, quant = encode_update(_record(SENT), _record(_trained()), 8)
    _tamper(encoded, quant, case)

    # Execute / Assert
    with pytest.raises(InconsistentRepliesError):
        decode_update(_record(SENT), encoded, quant)


def test_wrapper_decodes_before_aggregating_and_drops_bad_replies(
    make_reply: Callable[..., Message],
) -> None:
    # Prepare
    strategy = QuantizedUpdates(FedAvg(), bits=8)
    config = ConfigRecord()
    strategy._sent = {1: _record(SENT)}
    strategy.inner = FedAvg()
    replies = []
    for node in (1, 2, 3):
        encoded, quant = encode_update(_record(SENT), _record(_trained()), 8)
        if node == 3:
            quant["bits"] = 5  # undecodable: must be dropped, not crash the round
        reply = make_reply(node, metrics={"num-examples": 10})
        reply.content["arrays"] = encoded
        reply.content["quantization"] = quant
        replies.append(reply)
    replies.append(make_reply(4, error="client crashed"))

    # Execute
    arrays, metrics = strategy.aggregate_train(1, replies)

    # Assert
    assert arrays is not None and metrics is not None
    assert arrays["w"].dtype == "float32"
    assert metrics[QUANTIZED_BYTES] < metrics[FULL_PRECISION_BYTES]
    assert UPDATE_QUANTIZATION_BITS not in config


def test_wrapper_refuses_to_decode_without_sent_arrays(
    make_reply: Callable[..., Message],
) -> None:
    with pytest.raises(InconsistentRepliesError, match="no arrays were sent"):
        QuantizedUpdates(FedAvg(), bits=8).aggregate_train(7, [make_reply(1)])


def test_wrapper_rejects_unsupported_bits() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        QuantizedUpdates(FedAvg(), bits=3)
