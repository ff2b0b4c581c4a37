"""Connections are read back from config.toml; flwr's framed errors become one line."""

from __future__ import annotations

from pathlib import Path

from edgecloud.deploy.flwr_cli import add_connection, known_connections, one_line


def test_known_connections_lists_added_ones_and_local(tmp_path: Path) -> None:
    # Prepare
    env = {"FLWR_HOME": str(tmp_path / "flwr_home")}
    add_connection(env, "edgecloud-tls", "127.0.0.1:9092", root_certificates=tmp_path)

    # Execute
    names = known_connections(env)

    # Assert
    assert names == ["edgecloud-tls", "local"]


def test_known_connections_without_a_config_is_local_only(tmp_path: Path) -> None:
    # Execute / Assert: flwr creates "local" on first use
    assert known_connections({"FLWR_HOME": str(tmp_path)}) == ["local"]


def test_one_line_drops_richs_frame() -> None:
    # Prepare: flwr 1.41's error box for an unknown connection
    text = (
        "\n╭─ Error ─────────────────────────────╮\n"
        "│ SuperLink connection 'x' not found   │\n"
        "│ in the Flower configuration file.    │\n"
        "╰──────────────────────────────────────╯\n"
    )

    # Execute / Assert
    assert one_line(text) == (
        "Error SuperLink connection 'x' not found in the Flower configuration file."
    )
