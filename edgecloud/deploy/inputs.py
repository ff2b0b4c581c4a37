"""Check ``python -m edgecloud.deploy`` inputs before anything starts.

Every check returns the value to use (paths made absolute against the caller's
cwd: the Flower processes run in ``--workdir``) or raises :class:`BadInputError`, whose
one-line message names the flag, the value and what was expected.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgecloud.deploy.certificates import TlsFiles

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# flwr's own split of --run-config into key=value pairs (flwr/common/config.py)
_CONFIG_PAIR = re.compile(r"(\S+?)=(\'[^\']*\'|\"[^\"]*\"|\S+)")


class BadInputError(ValueError):
    """A bad command-line value; the message is one line naming the flag."""


def absolute(value: Path | str) -> Path:
    """``value`` with ``~`` expanded and ``..`` folded, relative to the caller's cwd."""
    return Path(os.path.abspath(Path(value).expanduser()))


def _shown(value: Path | str, path: Path) -> str:
    """``value`` as typed, plus the absolute path when they differ."""
    return str(value) if str(value) == str(path) else f"{value} ({path})"


def existing_file(flag: str, value: Path | str, expected: str) -> Path:
    """The absolute path of an existing file."""
    path = absolute(value)
    if path.is_dir():
        raise BadInputError(
            f"{flag} {_shown(value, path)}: is a directory; expected {expected}"
        )
    if not path.is_file():
        raise BadInputError(
            f"{flag} {_shown(value, path)}: no such file; expected {expected}"
        )
    return path


def existing_dir(flag: str, value: Path | str, expected: str) -> Path:
    """The absolute path of an existing directory."""
    path = absolute(value)
    if not path.is_dir():
        problem = "not a directory" if path.exists() else "no such directory"
        raise BadInputError(
            f"{flag} {_shown(value, path)}: {problem}; expected {expected}"
        )
    return path


def output_dir(flag: str, value: Path | str) -> Path:
    """The absolute path of a directory to write to (created later if missing)."""
    path = absolute(value)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise BadInputError(
                f"{flag} {_shown(value, path)}: {part} is a file; expected a "
                "directory (created if missing)"
            )
    return path


def not_overwritten(flag: str, value: Path | str, files: list[Path], what: str) -> None:
    """Refuse to replace existing key material (the old one may be in use)."""
    existing = [str(f) for f in files if f.exists()]
    if existing:
        raise BadInputError(
            f"{flag} {value}: {', '.join(existing)} already exist; refusing to "
            f"replace {what} (delete it first or choose another {flag})"
        )


def tls_dir(flag: str, value: Path | str) -> TlsFiles:
    """The CA, certificate and key that ``certs`` wrote into ``value``."""
    directory = existing_dir(flag, value, "the directory written by 'certs'")
    files = TlsFiles(
        directory / "ca.crt", directory / "server.pem", directory / "server.key"
    )
    missing = [p.name for p in (files.ca_cert, files.server_cert, files.server_key)]
    missing = [name for name in missing if not (directory / name).is_file()]
    if missing:
        raise BadInputError(
            f"{flag} {_shown(value, directory)}: missing {', '.join(missing)}; "
            "expected the directory written by 'certs' (ca.crt, server.pem, "
            "server.key)"
        )
    return files


def ca_certificate(flag: str, value: Path | str) -> Path:
    """An existing PEM certificate (the CA that signed the SuperLink's)."""
    expected = "the PEM CA certificate (ca.crt from 'certs')"
    path = existing_file(flag, value, expected)
    try:
        x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        raise BadInputError(
            f"{flag} {value}: not a PEM certificate; expected {expected}"
        ) from None
    return path


def private_key(flag: str, value: Path | str) -> Path:
    """An existing OpenSSH EC private key, as ``node-key`` writes it."""
    return _ec_key_file(
        flag,
        value,
        "private key (the file without .pub from 'node-key')",
        lambda data: serialization.load_ssh_private_key(data, None),
        ec.EllipticCurvePrivateKey,
    )


def public_key(flag: str, value: Path | str) -> Path:
    """An existing OpenSSH EC public key, as ``node-key`` writes it."""
    return _ec_key_file(
        flag,
        value,
        "public key (the .pub file from 'node-key')",
        serialization.load_ssh_public_key,
        ec.EllipticCurvePublicKey,
    )


def _ec_key_file(
    flag: str,
    value: Path | str,
    what: str,
    load: Callable[[bytes], object],
    key_type: type,
) -> Path:
    """An existing file holding an OpenSSH EC key of ``key_type``."""
    expected = f"an OpenSSH EC {what}"
    path = existing_file(flag, value, expected)
    kind = what.split(" (")[0]
    try:
        key = load(path.read_bytes())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BadInputError(
            f"{flag} {value}: not a readable {kind}; expected {expected}"
        ) from None
    if not isinstance(key, key_type):
        raise BadInputError(f"{flag} {value}: not an EC key; expected {expected}")
    return path


def port_number(flag: str, value: int) -> int:
    """A TCP port number, 1-65535."""
    if not 1 <= value <= 65535:
        raise BadInputError(f"{flag} {value}: expected a TCP port number in 1-65535")
    return value


def host_port(flag: str, value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) split into host and port."""
    expected = "HOST:PORT, e.g. 10.0.0.5:9092"
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^\s:\[\]]+):(\d+)", value)
    if match is None:
        raise BadInputError(f"{flag} {value}: expected {expected}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise BadInputError(
            f"{flag} {value}: port {port} out of 1-65535; expected {expected}"
        )
    return host, port


def available_port(
    flag: str, port: int, host: str = "127.0.0.1", hint: str = ""
) -> int:
    """``port`` if a server could bind ``host:port`` now (the way uvicorn does).

    ``hint`` ends the "already in use" message (what to do instead).
    """
    port_number(flag, port)
    family = socket.AF_INET6 if _is_ipv6(host) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BadInputError(
                    f"{flag} {port}: already in use on {host}; expected a free port"
                    + (f" ({hint})" if hint else "")
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise BadInputError(
                    f"--host {host}: not an address of this machine; expected one "
                    "of its addresses, 127.0.0.1 or 0.0.0.0"
                ) from None
            raise BadInputError(
                f"{flag} {port}: cannot bind {host}:{port} ({exc})"
            ) from None
    return port


def partition(partition_id: int, num_partitions: int) -> None:
    """``0 <= --partition-id < --num-partitions``."""
    if num_partitions < 1:
        raise BadInputError(f"--num-partitions {num_partitions}: expected at least 1")
    if not 0 <= partition_id < num_partitions:
        raise BadInputError(
            f"--partition-id {partition_id}: expected 0 <= partition id < "
            f"--num-partitions ({num_partitions})"
        )


def at_least(flag: str, value: int, minimum: int) -> int:
    """``value`` if it is at least ``minimum``."""
    if value < minimum:
        raise BadInputError(f"{flag} {value}: expected at least {minimum}")
    return value


def camera_ids(flag: str, value: str) -> str:
    """Comma-separated distinct non-negative camera ids, e.g. ``0,3``."""
    parts = [part.strip() for part in value.split(",")]
    if not all(part.isdigit() for part in parts) or len(set(map(int, parts))) != len(
        parts
    ):
        raise BadInputError(
            f"{flag} {value}: expected distinct non-negative camera ids separated "
            "by commas, e.g. 0,3"
        )
    return ",".join(parts)


def file_name(flag: str, value: str) -> str:
    """A name usable as a file name (PID/log/key files): letters, digits, ._-."""
    if not _NAME.fullmatch(value):
        raise BadInputError(
            f"{flag} {value!r}: expected a plain name (letters, digits, '.', '_', "
            "'-'; no '/')"
        )
    return value


def positive_seconds(flag: str, value: float) -> float:
    """A timeout in seconds, > 0."""
    if not value > 0:
        raise BadInputError(f"{flag} {value}: expected a number of seconds > 0")
    return value


def run_config(flag: str, value: str) -> str:
    """``--run-config`` as ``flwr run`` parses it (flwr/common/config.py).

    A ``.toml`` file is made absolute: ``flwr run`` runs in the app directory.
    """
    if value.endswith(".toml"):
        path = existing_file(flag, value, "a TOML file of run-config overrides")
        try:
            tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise BadInputError(f"{flag} {value}: not valid TOML ({exc})") from None
        return str(path)
    pairs = _CONFIG_PAIR.findall(value)
    expected = "space-separated key=value pairs, e.g. 'num-server-rounds=3 x=\"s\"'"
    if not pairs:
        raise BadInputError(f"{flag} {value}: no key=value pair; expected {expected}")
    try:
        tomllib.loads("\n".join(f"{k} = {v}" for k, v in pairs))
    except tomllib.TOMLDecodeError:
        raise BadInputError(
            f"{flag} {value}: invalid format; expected {expected} with TOML "
            "values (bool, int, float, quoted string)"
        ) from None
    return value


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False
