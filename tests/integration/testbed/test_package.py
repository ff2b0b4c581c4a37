"""The testbed package: its public names load lazily; sample label codes."""

from __future__ import annotations

import importlib

import pytest

import edgecloud.data.testbed as testbed
from edgecloud.data.testbed.samples import (
    SEQUENCE_SLOTS,
    decode_sequence,
    encode_sequence,
)


@pytest.mark.parametrize("name", testbed.__all__)
def test_every_public_name_is_the_one_its_submodule_defines(name: str) -> None:
    # Execute
    value = getattr(testbed, name)

    # Assert
    module = importlib.import_module(value.__module__) if callable(value) else None
    assert module is None or getattr(module, name) is value
    assert name in dir(testbed)


def test_unknown_names_and_the_moved_models_are_not_there() -> None:
    # The black boxes moved to edgecloud.models; nothing re-exports them here.
    for name in ("BlackBoxModel", "load_blackboxes", "nothing"):
        with pytest.raises(AttributeError, match=f"has no attribute '{name}'"):
            getattr(testbed, name)
    with pytest.raises(ImportError):
        from edgecloud.data.testbed import load_blackboxes  # noqa: F401
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("edgecloud.data.testbed.blackbox")


def test_sequence_codes_round_trip() -> None:
    assert decode_sequence(encode_sequence("PCTP")) == "PCTP"
    assert encode_sequence("").tolist() == [0] * SEQUENCE_SLOTS
    assert decode_sequence(encode_sequence("P" * 20)) == "P" * SEQUENCE_SLOTS
