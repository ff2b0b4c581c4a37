"""CLI inputs are checked up front: absolute paths, one-line errors naming the flag."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from edgecloud.deploy import inputs
from edgecloud.deploy.certificates import generate_node_key, generate_tls
from edgecloud.deploy.inputs import BadInputError


def test_relative_paths_resolve_against_the_callers_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a key where the README puts it, relative to where the user stands
    keys = generate_node_key(tmp_path / "keys", "node0")
    monkeypatch.chdir(tmp_path)

    # Execute
    private = inputs.private_key("--auth-key", Path("keys/node0"))
    public = inputs.public_key("--public-key", "keys/node0.pub")

    # Assert
    assert private == keys.private_key and private.is_absolute()
    assert public == keys.public_key and public.is_absolute()


def test_a_missing_file_names_flag_path_and_what_was_expected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    monkeypatch.chdir(tmp_path)

    # Execute
    with pytest.raises(BadInputError) as raised:
        inputs.private_key("--auth-key", Path("keys/node0"))

    # Assert
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("--auth-key keys/node0 ")
    assert str(tmp_path / "keys" / "node0") in message
    assert "no such file" in message and "expected" in message


@pytest.mark.parametrize(
    ("check", "flag", "write", "problem"),
    [
        # the public half given where the private key belongs (easy to mix up)
        (inputs.private_key, "--auth-key", "pub", "not a readable private key"),
        # the private half given where the public key belongs
        (inputs.public_key, "--public-key", "private", "not a readable public key"),
        # a key file given where the CA certificate belongs
        (inputs.ca_certificate, "--ca", "pub", "not a PEM certificate"),
        # a directory where a file belongs
        (inputs.ca_certificate, "--ca", "dir", "is a directory"),
    ],
    ids=["pub-as-private", "private-as-pub", "key-as-ca", "dir-as-ca"],
)
def test_a_file_of_the_wrong_kind_is_refused(
    tmp_path: Path, check: object, flag: str, write: str, problem: str
) -> None:
    # Prepare
    keys = generate_node_key(tmp_path, "node0")
    value = {"pub": keys.public_key, "private": keys.private_key, "dir": tmp_path}[
        write
    ]

    # Execute
    with pytest.raises(BadInputError) as raised:
        check(flag, value)  # type: ignore[operator]

    # Assert
    assert str(raised.value).startswith(f"{flag} {value}")
    assert problem in str(raised.value)


def test_tls_dir_lists_the_missing_files(tmp_path: Path) -> None:
    # Prepare: a certs folder that lost its key
    files = generate_tls(tmp_path / "certs")
    files.server_key.unlink()

    # Execute
    with pytest.raises(BadInputError) as raised:
        inputs.tls_dir("--tls-dir", tmp_path / "certs")

    # Assert
    assert "--tls-dir" in str(raised.value)
    assert "missing server.key" in str(raised.value)


def test_tls_dir_returns_absolute_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    generate_tls(tmp_path / "certs")
    monkeypatch.chdir(tmp_path)

    # Execute
    files = inputs.tls_dir("--tls-dir", "certs")

    # Assert
    assert files.ca_cert == tmp_path / "certs" / "ca.crt"
    assert files.server_key.is_absolute()


def test_an_output_dir_below_a_file_is_refused(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "taken").write_text("")

    # Execute
    with pytest.raises(BadInputError) as raised:
        inputs.output_dir("--workdir", tmp_path / "taken" / "work")

    # Assert
    assert str(raised.value).startswith("--workdir ")
    assert "is a file" in str(raised.value)


def test_existing_key_material_is_not_overwritten(tmp_path: Path) -> None:
    # Prepare
    keys = generate_node_key(tmp_path, "node0")

    # Execute
    with pytest.raises(BadInputError) as raised:
        inputs.not_overwritten(
            "--name", "node0", [keys.private_key, keys.public_key], "a key"
        )

    # Assert
    message = str(raised.value)
    assert message.startswith("--name node0: ")
    assert f"{keys.private_key}, {keys.public_key} already exist" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.5:9092", ("10.0.0.5", 9092)),  # the README's form
        ("localhost:1", ("localhost", 1)),  # a name, the lowest port
        ("[::1]:65535", ("::1", 65535)),  # IPv6 in brackets, the highest port
    ],
)
def test_host_port_accepts(value: str, expected: tuple[str, int]) -> None:
    # Execute / Assert
    assert inputs.host_port("--superlink", value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.5",  # no port
        "10.0.0.5:",  # empty port
        ":9092",  # no host
        "10.0.0.5:port",  # port not a number
        "10.0.0.5:0",  # port 0 cannot be dialled
        "10.0.0.5:70000",  # port above 65535
        "::1:9092",  # IPv6 without brackets is ambiguous
        "https://10.0.0.5:9092",  # a URL, not HOST:PORT
    ],
)
def test_host_port_refuses(value: str) -> None:
    # Execute
    with pytest.raises(BadInputError) as raised:
        inputs.host_port("--superlink", value)

    # Assert
    assert str(raised.value).startswith(f"--superlink {value}: ")
    assert "HOST:PORT" in str(raised.value)


def test_a_port_in_use_is_refused_with_flag_and_value(listening: int) -> None:
    # Execute
    with pytest.raises(BadInputError) as raised:
        inputs.available_port("--port", listening)

    # Assert
    assert str(raised.value).startswith(f"--port {listening}: already in use")


def test_a_free_port_is_accepted() -> None:
    # Prepare: a port the OS just handed out and nobody listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])

    # Execute / Assert
    assert inputs.available_port("--port", port) == port


def test_a_host_that_is_not_this_machine_is_refused() -> None:
    # Execute: 192.0.2.1 is TEST-NET-1, never a local address
    with pytest.raises(BadInputError) as raised:
        inputs.available_port("--port", 9092, "192.0.2.1")

    # Assert
    assert str(raised.value).startswith("--host 192.0.2.1: not an address")


@pytest.mark.parametrize(
    ("partition_id", "num_partitions"),
    [
        (0, 1),  # a federation of one
        (1, 2),  # the last partition
    ],
)
def test_partition_accepts(partition_id: int, num_partitions: int) -> None:
    # Execute / Assert: no exception
    inputs.partition(partition_id, num_partitions)


@pytest.mark.parametrize(
    ("partition_id", "num_partitions", "flag"),
    [
        (2, 2, "--partition-id"),  # one past the last partition
        (-1, 2, "--partition-id"),  # negative
        (0, 0, "--num-partitions"),  # no partitions at all
    ],
)
def test_partition_refuses(partition_id: int, num_partitions: int, flag: str) -> None:
    # Execute
    with pytest.raises(BadInputError) as raised:
        inputs.partition(partition_id, num_partitions)

    # Assert
    assert str(raised.value).startswith(f"{flag} ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0,3", "0,3"),  # the README's example
        (" 1 , 2 ", "1,2"),  # spaces around ids are harmless and dropped
        ("0,x", None),  # not a number
        ("1,1", None),  # a camera twice
        ("-1", None),  # negative id
        ("", None),  # no camera
    ],
)
def test_camera_ids(value: str, expected: str | None) -> None:
    # Execute / Assert
    if expected is not None:
        assert inputs.camera_ids("--cameras", value) == expected
    else:
        with pytest.raises(BadInputError, match=r"^--cameras "):
            inputs.camera_ids("--cameras", value)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("supernode0", True),  # the default
        ("edge-1.b_2", True),  # every allowed punctuation
        ("../x", False),  # would write PID/log files outside the workdir
        ("a b", False),  # spaces make shell copy-paste fragile
        ("", False),  # no name
        (".hidden", False),  # must start with a letter or digit
    ],
)
def test_file_name(value: str, valid: bool) -> None:
    # Execute / Assert
    if valid:
        assert inputs.file_name("--name", value) == value
    else:
        with pytest.raises(BadInputError, match=r"^--name "):
            inputs.file_name("--name", value)


@pytest.mark.parametrize(
    "value",
    [
        "num-server-rounds=1",  # one int
        'num-server-rounds=1 fl.fraction-evaluate=0.0 output-dir="/tmp/o"',  # dotted
        "capability='split' split.mode=\"splitfed-v1\"",  # both quote styles
    ],
)
def test_run_config_accepts_what_flwr_accepts(value: str) -> None:
    # Execute / Assert
    assert inputs.run_config("--run-config", value) == value


@pytest.mark.parametrize(
    "value",
    [
        'num-server-rounds=="x',  # flwr: "invalid format"
        "output-dir=/tmp/o",  # an unquoted string is not a TOML value
        "num-server-rounds",  # no key=value pair at all (flwr ignores it)
        "missing.toml",  # a TOML file that is not there
    ],
)
def test_run_config_refuses(value: str) -> None:
    # Execute
    with pytest.raises(BadInputError) as raised:
        inputs.run_config("--run-config", value)

    # Assert
    assert str(raised.value).startswith(f"--run-config {value}")


def test_a_run_config_file_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: flwr run runs in the app directory, not where the user stands
    (tmp_path / "rounds.toml").write_text("num-server-rounds = 2\n")
    monkeypatch.chdir(tmp_path)

    # Execute / Assert
    assert inputs.run_config("--run-config", "rounds.toml") == str(
        tmp_path / "rounds.toml"
    )
