"""TLS certificates (SuperLink, session endpoint) and SSH keys for SuperNode auth.

Generated with the ``cryptography`` package (a dependency of flwr) instead of the
openssl CLI, so the same code runs on any machine and in tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of a generated CA certificate and SuperLink certificate/key."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass(frozen=True)
class NodeKeyFiles:
    """Paths of a SuperNode's authentication key pair (OpenSSH format)."""

    private_key: Path
    public_key: Path


class TlsMaterial(NamedTuple):
    """PEM bytes of a CA certificate and of a server certificate and key it signed."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def tls_material(hosts: Sequence[str] = ("localhost", "127.0.0.1")) -> TlsMaterial:
    """A fresh CA and a server certificate valid for ``hosts``, in memory.

    Each host becomes an IP subject alternative name if it parses as an IP address,
    else a DNS name; the first one is also the certificate's common name.

    Raises
    ------
    ValueError
        If ``hosts`` is empty or holds an empty name.
    """
    if isinstance(hosts, str):
        raise ValueError(f"hosts must be a sequence of names, got the string {hosts!r}")
    if not hosts or any(not host for host in hosts):
        raise ValueError(f"hosts must be non-empty names or IPs, got {list(hosts)}")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgecloud test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return TlsMaterial(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=server_cert.public_bytes(serialization.Encoding.PEM),
        key_pem=server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def certificate_hosts(cert_pem: bytes) -> list[str]:
    """The DNS names and IP addresses a PEM certificate is valid for (its SANs).

    Raises
    ------
    ValueError
        If ``cert_pem`` is not a PEM certificate.
    """
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    names: list[str] = list(san.value.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)]
    return names


def generate_tls(
    directory: Path, hosts: Sequence[str] = ("localhost", "127.0.0.1")
) -> TlsFiles:
    """Create a CA and a SuperLink certificate valid for ``hosts`` (names or IPs).

    For SuperNodes on other machines, include the SuperLink machine's address as
    they will dial it (e.g. ``hosts=("localhost", "127.0.0.1", "10.0.0.5")``).
    Writes ``ca.crt``, ``server.pem`` and ``server.key`` (mode 0600) in ``directory``.
    """
    material = tls_material(hosts)
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        directory / "ca.crt", directory / "server.pem", directory / "server.key"
    )
    files.ca_cert.write_bytes(material.ca_pem)
    files.server_cert.write_bytes(material.cert_pem)
    _write_private(files.server_key, material.key_pem)
    return files


def generate_node_key(directory: Path, name: str) -> NodeKeyFiles:
    """Create an ECDSA P-384 key pair for SuperNode authentication (OpenSSH format)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    files = NodeKeyFiles(directory / name, directory / f"{name}.pub")
    _write_private(
        files.private_key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    files.public_key.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n"
    )
    return files


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)
