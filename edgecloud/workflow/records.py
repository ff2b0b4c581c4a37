"""Tensors <-> Flower records, and typed reads of replies that drop a bad node.

The one conversion helper between NumPy arrays and ``ArrayRecord`` (keys kept, arrays
made contiguous), and accessors that turn a missing or mistyped entry of a reply into
:class:`~edgecloud.workflow.exchange.DroppedError` instead of a ``KeyError``: a
malformed reply drops its node, a bug in our own code still raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord

from edgecloud.types import NDArray
from edgecloud.workflow.exchange import DroppedError

ValueT = TypeVar("ValueT")


def to_record(arrays: Mapping[str, NDArray]) -> ArrayRecord:
    """An ArrayRecord of named NumPy arrays (contiguous copies where needed)."""
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def from_record(record: ArrayRecord) -> dict[str, NDArray]:
    """Named NumPy arrays of an ArrayRecord."""
    return {k: a.numpy() for k, a in record.items()}


def reply_config(reply: Message, name: str) -> ConfigRecord:
    """The reply's ConfigRecord ``name``; a reply without it is malformed."""
    record = reply.content.config_records.get(name)
    if record is None:
        raise DroppedError(f"reply has no '{name}' config record")
    return record


def reply_arrays(reply: Message, name: str) -> ArrayRecord:
    """The reply's ArrayRecord ``name``; a reply without it is malformed."""
    record = reply.content.array_records.get(name)
    if record is None:
        raise DroppedError(f"reply has no '{name}' array record")
    return record


def reply_metrics(reply: Message, name: str) -> MetricRecord:
    """The reply's MetricRecord ``name``; a reply without it is malformed."""
    record = reply.content.metric_records.get(name)
    if record is None:
        raise DroppedError(f"reply has no '{name}' metric record")
    return record


def value_of(record: Mapping[str, object], key: str, kind: type[ValueT]) -> ValueT:
    """``record[key]`` if present and of type ``kind`` (bool is not an int here)."""
    value = record.get(key)
    if value is None:
        raise DroppedError(f"reply lacks '{key}'")
    wrong_bool = isinstance(value, bool) and kind is not bool
    if wrong_bool or not isinstance(value, kind):
        raise DroppedError(f"reply has '{key}' = {value!r}; expected a {kind.__name__}")
    return value
