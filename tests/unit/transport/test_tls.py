"""In-memory TLS material, and the checks on a tls_dir before any client fails."""

from __future__ import annotations

import ipaddress
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edgecloud.deploy.certificates import certificate_hosts, generate_tls, tls_material
from edgecloud.transport.tls import covers, load_tls_dir


def test_tls_material_is_a_verifying_chain_for_every_host() -> None:
    # Execute
    material = tls_material(("edge.example", "10.1.2.3", "::1"))
    ca = x509.load_pem_x509_certificate(material.ca_pem)
    cert = x509.load_pem_x509_certificate(material.cert_pem)
    key = serialization.load_pem_private_key(material.key_pem, password=None)

    # Assert
    cert.verify_directly_issued_by(ca)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(
        der, spki
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["edge.example"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("::1"),
    }
    assert certificate_hosts(material.cert_pem) == ["edge.example", "10.1.2.3", "::1"]


def test_each_call_makes_a_new_ca() -> None:
    # Execute
    first, second = tls_material(), tls_material()

    # Assert
    assert first.ca_pem != second.ca_pem and first.key_pem != second.key_pem


@pytest.mark.parametrize(
    "hosts",
    [
        # nothing to certify
        (),
        # a string is a sequence of one-letter hosts: refuse, do not certify "l"
        "localhost",
        # an empty name
        ("localhost", ""),
    ],
)
def test_tls_material_refuses_bad_hosts(hosts: object) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="hosts"):
        tls_material(hosts)


def test_generate_tls_writes_the_material_files(tmp_path: Path) -> None:
    # Execute
    files = generate_tls(tmp_path / "certs", ("127.0.0.1",))

    # Assert
    assert [p.name for p in (files.ca_cert, files.server_cert, files.server_key)] == [
        "ca.crt",
        "server.pem",
        "server.key",
    ]
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    cert.verify_directly_issued_by(
        x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    )
    assert files.server_key.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("names", "host", "expected"),
    [
        # exact DNS name, case-insensitive
        (["Edge.Example"], "edge.example", True),
        # exact IP
        (["10.0.0.5"], "10.0.0.5", True),
        # the same IPv6 address written differently
        (["::1"], "0:0:0:0:0:0:0:1", True),
        # a wildcard covers one label
        (["*.example.org"], "node.example.org", True),
        # ... not two
        (["*.example.org"], "a.node.example.org", False),
        # ... nor the bare domain
        (["*.example.org"], "example.org", False),
        # a name does not cover an IP it may resolve to
        (["localhost"], "127.0.0.1", False),
        # another IP
        (["10.0.0.5"], "10.0.0.6", False),
    ],
)
def test_covers(names: list[str], host: str, expected: bool) -> None:
    # Execute / Assert
    assert covers(names, host) is expected


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    generate_tls(tmp_path / "certs", ("localhost", "127.0.0.1"))
    return tmp_path / "certs"


def test_load_tls_dir_reads_deploy_certs(certs: Path) -> None:
    # Execute
    material = load_tls_dir(certs, "127.0.0.1")

    # Assert
    assert material.ca_pem == (certs / "ca.crt").read_bytes()


def test_load_tls_dir_names_a_missing_file(certs: Path) -> None:
    # Prepare
    (certs / "server.key").unlink()

    # Execute / Assert
    with pytest.raises(ValueError, match=r"server\.key is missing"):
        load_tls_dir(certs, "127.0.0.1")


def test_load_tls_dir_refuses_a_host_the_certificate_does_not_name(
    certs: Path,
) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=r"not for the advertised host '10\.9\.9\.9'"):
        load_tls_dir(certs, "10.9.9.9")


def test_load_tls_dir_refuses_a_certificate_of_another_ca(
    certs: Path, tmp_path: Path
) -> None:
    # Prepare
    other = generate_tls(tmp_path / "other", ("127.0.0.1",))
    shutil.copy(other.ca_cert, certs / "ca.crt")

    # Execute / Assert
    with pytest.raises(ValueError, match=r"not signed by ca\.crt"):
        load_tls_dir(certs, "127.0.0.1")


def test_load_tls_dir_refuses_a_key_of_another_certificate(
    certs: Path, tmp_path: Path
) -> None:
    # Prepare
    other = generate_tls(tmp_path / "other", ("127.0.0.1",))
    shutil.copy(other.server_key, certs / "server.key")

    # Execute / Assert
    with pytest.raises(ValueError, match=r"server\.key does not match"):
        load_tls_dir(certs, "127.0.0.1")


def test_load_tls_dir_refuses_garbage(certs: Path) -> None:
    # Prepare
    (certs / "server.pem").write_bytes(b"garbage")

    # Execute / Assert
    with pytest.raises(ValueError, match="unreadable PEM"):
        load_tls_dir(certs, "127.0.0.1")
