"""Shared fixtures: fabricated Flower replies and the default run config."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)
from flwr.supercore.task_identity import TaskIdentity

from edgecloud.local_simulation import default_run_config

# Tests never reach the network or install dependencies per run.
os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")


def metadata(
    src_node_id: int, message_type: str = "train", reply_to: str = "q"
) -> Metadata:
    return Metadata(
        run_id=1,
        message_id=f"m{src_node_id}",
        src_node_id=src_node_id,
        dst_node_id=0,
        reply_to_message_id=reply_to,
        group_id="1",
        created_at=0.0,
        ttl=3600.0,
        message_type=message_type,
    )


@pytest.fixture
def make_reply() -> Callable[..., Message]:
    """Build a reply Message as a ClientApp would send it (or an error reply)."""

    def _make(
        src_node_id: int = 1,
        arrays: dict[str, np.ndarray[Any, Any]] | None = None,
        metrics: dict[str, Any] | None = None,
        configs: dict[str, ConfigRecord] | None = None,
        error: str | None = None,
        message_type: str = "train",
    ) -> Message:
        meta = metadata(src_node_id, message_type)
        if error is not None:
            return Message(metadata=meta, error=Error(code=2, reason=error))
        content = RecordDict()
        if arrays is not None:
            content["arrays"] = ArrayRecord({k: Array(v) for k, v in arrays.items()})
        content["metrics"] = MetricRecord(metrics or {"num-examples": 10})
        for key, record in (configs or {}).items():
            content[key] = record
        return Message(metadata=meta, content=content)

    return _make


@pytest.fixture
def run_config() -> dict[str, Any]:
    """The pyproject defaults, as ``context.run_config`` holds them."""
    return default_run_config()


@pytest.fixture
def server_identity() -> Iterator[None]:
    """Flower stamps new Messages with the run id of the running ServerApp."""
    names = ("_run_id", "_node_id", "_task_id")
    previous = [getattr(TaskIdentity, n) for n in names]
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    for name, value in zip(names, previous, strict=True):
        setattr(TaskIdentity, name, value)


@pytest.fixture
def server_bundle(tmp_path: Path) -> str:
    """A directory shaped like a STIP server bundle (files only, for config checks)."""
    bundle = tmp_path / "bundle" / "server"
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text("{}")
    (bundle / "model.safetensors").write_bytes(b"")
    return str(bundle)


@pytest.fixture
def fake_testbed(tmp_path: Path) -> Path:
    """A testbed-shaped directory (files only): a manifest and two black boxes' meta.

    Enough for PacketGame's server-side config checks.
    """
    root = tmp_path / "testbed"
    root.mkdir()
    (root / "manifest.json").write_text("{}")
    for name, slots in (("person-counter", 1), ("sequence-reader", 8)):
        model = root / "models" / name
        model.mkdir(parents=True)
        (model / "meta.json").write_text(json.dumps({"spec": {"slots": slots}}))
    return root
