"""TLS material of the session endpoint: generated in memory or read from files."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from edgecloud.deploy.certificates import TlsMaterial, certificate_hosts

TLS_FILES = ("ca.crt", "server.pem", "server.key")


def load_tls_dir(directory: Path, host: str) -> TlsMaterial:
    """Read ``ca.crt``, ``server.pem``, ``server.key`` and check they serve ``host``.

    Checks what would otherwise surface only as a TLS handshake failure on every
    client: the certificate names ``host``, the CA signed it, the key matches it.

    Raises
    ------
    ValueError
        Naming the file and what is wrong with it.
    """
    pems: list[bytes] = []
    for name in TLS_FILES:
        path = directory / name
        if not path.is_file():
            raise ValueError(
                f"tls_dir {directory}: {name} is missing (expected "
                f"{', '.join(TLS_FILES)} as `python -m edgecloud.deploy certs` writes "
                "them)"
            )
        pems.append(path.read_bytes())
    material = TlsMaterial(*pems)
    try:
        ca = x509.load_pem_x509_certificate(material.ca_pem)
        cert = x509.load_pem_x509_certificate(material.cert_pem)
        key = serialization.load_pem_private_key(material.key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise ValueError(f"tls_dir {directory}: unreadable PEM file: {err}") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as err:
        raise ValueError(
            f"tls_dir {directory}: server.pem is not signed by ca.crt ({err})"
        ) from None
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise ValueError(f"tls_dir {directory}: server.key does not match server.pem")
    hosts = certificate_hosts(material.cert_pem)
    if not covers(hosts, host):
        raise ValueError(
            f"tls_dir {directory}: server.pem is valid for {hosts}, not for the "
            f"advertised host {host!r} (regenerate it with --host {host})"
        )
    return material


def covers(names: list[str], host: str) -> bool:
    """Whether a certificate valid for ``names`` verifies for ``host``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        wanted = host.lower().rstrip(".")
        for name in names:
            name = name.lower().rstrip(".")
            if name == wanted:
                return True
            # "*.example.org" matches exactly one leftmost label
            if name.startswith("*.") and wanted.partition(".")[2] == name[2:]:
                return True
        return False
    for name in names:
        try:
            if ipaddress.ip_address(name) == address:
                return True
        except ValueError:
            continue
    return False


def _public_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
