"""One shape for every capability: tiny glue, one registry, names kept in packages."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecloud.capability import CAPABILITIES
from edgecloud.local_simulation import PROJECT_DIR

PACKAGE = PROJECT_DIR / "edgecloud"
# (file, literal) pairs where a word that is also a capability or mode name means
# something else.
OTHER_MEANINGS = {
    # the testbed's train / held-out camera split (manifest field, CLI option)
    ("edgecloud/data/testbed/__main__.py", "split"),
    ("edgecloud/data/testbed/generate.py", "split"),
    ("edgecloud/data/testbed/readers.py", "split"),
    # the algorithm library's name for the full gate (policy / gate mode)
    ("edgecloud/packetgame/decision.py", "packetgame"),
    ("edgecloud/packetgame/evaluation.py", "packetgame"),
    ("edgecloud/packetgame/policies.py", "packetgame"),
    ("edgecloud/packetgame/replay.py", "packetgame"),
}


@pytest.mark.parametrize("glue", ["server_app.py", "client_app.py"])
def test_glue_stays_tiny(glue: str) -> None:
    lines = (PACKAGE / glue).read_text().splitlines()
    assert len(lines) < 40, f"{glue} has {len(lines)} lines"


def test_the_monolithic_config_and_hand_lists_are_gone() -> None:
    for gone in ("config.py", "protocol.py", "client_split.py", "client_stip.py"):
        assert not (PACKAGE / gone).exists(), gone
    assert not (PACKAGE / "strategies").exists()
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    assert "CLIENT_KEYS" not in source and "RESUMABLE_CHANGES" not in source


def test_every_capability_is_a_package_with_the_same_shape() -> None:
    for name, capability in CAPABILITIES.items():
        # Prepare
        package = PACKAGE / "capabilities" / name

        # Assert
        assert capability.name == name == capability.section.section
        for module in ("config.py", "keys.py", "server.py", "client.py"):
            assert (package / module).is_file(), f"{name}/{module}"


def test_the_client_app_registers_every_capabilitys_handlers() -> None:
    from edgecloud.capabilities.packetgame.keys import MSG_ANALYTICS, MSG_TRAIN
    from edgecloud.capabilities.split.keys import MSG_STEP as SPLIT_STEP
    from edgecloud.capabilities.stip.keys import MSG_STEP as STIP_STEP
    from edgecloud.client_app import app

    registered = set(app._registered_funcs)
    handlers = {"train.default", "evaluate.default", SPLIT_STEP, STIP_STEP}
    assert handlers | {MSG_TRAIN, MSG_ANALYTICS} <= registered


def _string_constants(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def _names_of(capability: str) -> set[str]:
    """Strings that select or configure ``capability``: its name and its modes."""
    section = CAPABILITIES[capability].section
    return {capability, *section.modes()}


@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
def test_no_capability_name_appears_outside_its_package_and_the_registry(
    capability: str,
) -> None:
    # Prepare
    names = _names_of(capability)
    own = PACKAGE / "capabilities" / capability
    allowed = {PACKAGE / "capability.py"}

    # Execute: every string literal of the package, outside the capability's own
    found = [
        f"{path.relative_to(PROJECT_DIR)}:{line}: {value!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if own not in path.parents and path not in allowed
        for line, value in _string_constants(path)
        if (value in names or value.startswith(f"{capability}."))
        and (str(path.relative_to(PROJECT_DIR)), value) not in OTHER_MEANINGS
    ]

    # Assert
    assert not found, "\n".join(found)
