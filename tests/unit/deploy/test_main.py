"""``python -m edgecloud.deploy``: bad input exits 2, a failed start 1, one line each.

Nothing here starts Flower: a failed check must happen before any process starts,
and the start/stop paths run fake processes that print flwr 1.41's log lines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import edgecloud.deploy.__main__ as cli
from edgecloud.deploy.certificates import generate_node_key, generate_tls
from edgecloud.deploy.flwr_cli import known_connections
from edgecloud.deploy.processes import free_port, is_alive, running_pid
from tests.unit.deploy.fake_flwr import (
    SUPERLINK_UP,
    SUPERNODE_BAD_PATH,
    SUPERNODE_REFUSED,
    SUPERNODE_UP,
    fake,
)

PROG = "python -m edgecloud.deploy"
NODE = [
    "supernode",
    "--workdir",
    "work",
    "--partition-id",
    "0",
    "--num-partitions",
    "2",
]


def node(*extra: str, pid: str = "0", workdir: str = "work") -> list[str]:
    """``supernode`` argv dialling the busy port ``{busy}`` (formatted later)."""
    return [
        "supernode",
        "--workdir",
        workdir,
        "--superlink",
        "127.0.0.1:{busy}",
        "--partition-id",
        pid,
        "--num-partitions",
        "2",
        *extra,
    ]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's folder as the README leaves it: certs/, keys/node0, ca.crt; cwd."""
    generate_tls(tmp_path / "certs")
    generate_node_key(tmp_path / "keys", "node0")
    (tmp_path / "ca.crt").write_bytes((tmp_path / "certs" / "ca.crt").read_bytes())
    (tmp_path / "app").mkdir()
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr_home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "starts"),
    [
        # the README's relative key path, but the key is not there
        (
            node("--ca", "ca.crt", "--auth-key", "keys/missing"),
            "--auth-key keys/missing",
        ),
        # CA certificate missing
        (
            node("--ca", "missing.crt"),
            "--ca missing.crt",
        ),
        # the public half passed as the private key
        (
            node("--ca", "ca.crt", "--auth-key", "keys/node0.pub"),
            "--auth-key keys/node0.pub",
        ),
        # authentication without TLS is refused by flwr too
        (
            node("--auth-key", "keys/node0"),
            "--auth-key: requires --ca",
        ),
        # no port in --superlink
        ([*NODE, "--superlink", "10.0.0.5"], "--superlink 10.0.0.5"),
        # port out of range in --superlink
        (
            [*NODE, "--superlink", "10.0.0.5:99999"],
            "--superlink 10.0.0.5:99999",
        ),
        # partition id equal to the number of partitions
        (node(pid="2"), "--partition-id 2"),
        # dataset directory missing
        (
            node("--data-dir", "nodata"),
            "--data-dir nodata",
        ),
        # camera ids not numbers
        (
            node("--cameras", "0,x"),
            "--cameras 0,x",
        ),
        # an explicit Runtime API port that is taken
        (
            node("--port", "{busy}"),
            "--port {busy}",
        ),
        # a name that would put PID/log files outside the workdir
        (
            node("--name", "../x"),
            "--name '../x'",
        ),
        # a zero timeout would fail every start
        (
            node("--timeout", "0"),
            "--timeout 0",
        ),
        # workdir below a file
        (node(workdir="a-file/work"), "--workdir a-file/work"),
        # TLS folder missing
        (["superlink", "--workdir", "work", "--tls-dir", "nocerts"], "--tls-dir"),
        # authentication without TLS
        (["superlink", "--workdir", "work", "--auth"], "--auth: requires --tls-dir"),
        # SuperLink port taken (a SuperLink already runs there)
        (["superlink", "--workdir", "work", "--port", "{busy}"], "--port {busy}"),
        # a host that is not this machine
        (
            ["superlink", "--workdir", "work", "--host", "192.0.2.1", "--port", "9"],
            "--host 192.0.2.1",
        ),
        # the private key passed for registration
        (
            ["register", "--connection", "local", "--public-key", "keys/node0"],
            "--public-key keys/node0",
        ),
        # a connection nobody added
        (
            ["register", "--connection", "nope", "--public-key", "keys/node0.pub"],
            "--connection nope",
        ),
        # an app folder without pyproject.toml
        (["run", "--connection", "local", "--app", "app"], "--app app"),
        # a simulation without SuperNodes
        (["simulate", "--num-supernodes", "0"], "--num-supernodes 0"),
        # a local federation without SuperNodes
        (["local", "--workdir", "work", "--num-supernodes", "0"], "--num-supernodes 0"),
        # local authentication without TLS
        (["local", "--workdir", "work", "--auth"], "--auth: requires --tls"),
        # stop with nothing to stop
        (["stop"], "nothing to stop"),
        # stop in a folder that does not exist
        (["stop", "--workdir", "nowhere"], "--workdir nowhere"),
        # keys and CAs are never overwritten
        (["node-key", "--out", "keys", "--name", "node0"], "--name node0"),
        (["certs", "--out", "certs"], "--out certs"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_starts_nothing(
    site: Path,
    listening: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    starts: str,
) -> None:
    # Prepare: starting anything (a process, a federation) is a failure here
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"started something for bad input {argv}")

    monkeypatch.setattr(cli, "start_process", refuse)
    monkeypatch.setattr(cli, "start_local_federation", refuse)
    argv = [arg.format(busy=listening) for arg in argv]
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}

    # Execute
    code, out, err = run_cli(argv, capsys)

    # Assert
    assert code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(
        f"{PROG} {argv[0]}: error: {starts.format(busy=listening)}"
    ), err
    assert not list(site.rglob("*.pid")) and not list(site.rglob("*.log"))
    # nothing lost: every file is as it was
    assert {p: p.read_bytes() for p in before} == before


def test_run_on_an_unknown_connection_names_it(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a real app folder, so the connection is what is wrong
    (site / "app" / "pyproject.toml").write_text("[project]\nname = 'x'\n")

    # Execute
    code, _, err = run_cli(["run", "--connection", "nope", "--app", "app"], capsys)

    # Assert
    assert code == 2
    assert err.startswith(f"{PROG} run: error: --connection nope: not in ")
    assert "known: local" in err


def test_an_unreachable_superlink_fails_fast_with_one_line(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: port 9 (discard) has no listener on loopback here
    argv = [*NODE, "--superlink", "127.0.0.1:9"]

    # Execute
    code, _, err = run_cli(argv, capsys)

    # Assert
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith(
        f"{PROG} supernode: failed: cannot reach the SuperLink at --superlink "
        "127.0.0.1:9"
    )
    assert not list(site.rglob("*.pid"))


def _fake_builder(
    log: str, calls: list[dict[str, Any]], then_sleep: float = 0.0
) -> Callable[..., list[str]]:
    def build(*args: Any, **kwargs: Any) -> list[str]:
        calls.append({"args": args, **kwargs})
        return fake(log, then_sleep=then_sleep)

    return build


def test_a_connected_supernode_gets_absolute_paths_and_a_free_port(
    site: Path,
    listening: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: run from a subfolder, paths relative to it (not to --workdir)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        cli, "supernode_command", _fake_builder(SUPERNODE_UP, calls, then_sleep=30)
    )
    (site / "device").mkdir()
    monkeypatch.chdir(site / "device")
    argv = [*NODE, "--superlink", f"127.0.0.1:{listening}"]
    argv += ["--ca", "../ca.crt", "--auth-key", "../keys/node0"]

    # Execute
    code, out, err = run_cli(argv, capsys)
    pid = running_pid(site / "device" / "work", "supernode0")
    stop_code, _, _ = run_cli(["stop", "--workdir", "work"], capsys)

    # Assert
    assert (code, err) == (0, "")
    assert "connected to" in out and "as node 13141801189036072404" in out
    assert calls[0]["root_certificates"] == site / "ca.crt"
    assert calls[0]["auth_private_key"] == site / "keys" / "node0"
    assert calls[0]["args"][1] != 9094  # a free port, not flwr's default
    assert pid is not None and stop_code == 0 and not is_alive(pid)


def test_a_refused_supernode_exits_1_with_the_wait_and_is_stopped(
    site: Path,
    listening: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        cli, "supernode_command", _fake_builder(SUPERNODE_REFUSED, calls, 30)
    )
    argv = [*NODE, "--superlink", f"127.0.0.1:{listening}"]

    # Execute
    code, out, err = run_cli(argv, capsys)

    # Assert
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"{PROG} supernode: failed: the SuperLink at 127.0.0.1:")
    assert "killed less than 60 s ago" in err and "wait 60 s" in err
    assert err.rstrip().endswith(f"log {site / 'work' / 'supernode0.log'}")
    assert not (site / "work" / "supernode0.pid").exists()


def test_a_superlink_that_dies_exits_1_naming_the_reason(
    site: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        cli, "superlink_command", _fake_builder(SUPERNODE_BAD_PATH, calls)
    )

    # Execute
    argv = ["superlink", "--workdir", "work", "--port", str(free_port())]
    code, _, err = run_cli(argv, capsys)

    # Assert
    assert code == 1
    assert err.count("\n") == 1
    assert "exited during startup: Path argument" in err
    assert not (site / "work" / "superlink.pid").exists()


def test_a_serving_superlink_on_all_interfaces_adds_a_loopback_connection(
    site: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: TLS folder given relative to the cwd
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        cli, "superlink_command", _fake_builder(SUPERLINK_UP, calls, then_sleep=30)
    )
    port = free_port()
    argv = ["superlink", "--workdir", "work", "--host", "0.0.0.0", "--port", str(port)]
    argv += ["--tls-dir", "certs", "--auth", "--connection", "edge"]

    # Execute
    code, out, err = run_cli(argv, capsys)
    stop_code, stop_out, _ = run_cli(["stop", "--workdir", "work"], capsys)

    # Assert
    assert (code, err) == (0, "")
    assert calls[0]["tls"].ca_cert == site / "certs" / "ca.crt"
    assert f"connection 'edge' -> 127.0.0.1:{port}" in out
    assert "edge" in known_connections({"FLWR_HOME": str(site / "flwr_home")})
    assert stop_code == 0 and stop_out.startswith("stopped PIDs [")


def test_a_second_supernode_under_a_running_name_is_refused(
    site: Path,
    listening: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: supernode0 runs; starting it again would overwrite its PID file
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        cli, "supernode_command", _fake_builder(SUPERNODE_UP, calls, then_sleep=30)
    )
    argv = [*NODE, "--superlink", f"127.0.0.1:{listening}"]
    first, _, _ = run_cli(argv, capsys)
    pid = running_pid(site / "work", "supernode0")

    # Execute
    try:
        code, _, err = run_cli(argv, capsys)
        still = running_pid(site / "work", "supernode0")
    finally:
        run_cli(["stop", "--workdir", "work"], capsys)

    # Assert
    assert first == 0 and code == 2
    assert err.startswith(f"{PROG} supernode: error: --name supernode0: ")
    assert f"(PID {pid}) still runs" in err
    assert still == pid and len(calls) == 1
