"""Generated TLS material verifies, and node keys are in the SSH format Flower wants."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgecloud.deploy.certificates import generate_node_key, generate_tls


def test_server_certificate_is_signed_by_ca_for_all_hosts(tmp_path: Path) -> None:
    # Execute
    files = generate_tls(tmp_path, ("localhost", "127.0.0.1", "10.1.2.3"))
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())

    # Assert
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.1.2.3"),
    }
    assert files.server_key.stat().st_mode & 0o077 == 0


def test_node_key_is_openssh_ecdsa_p384(tmp_path: Path) -> None:
    # Execute
    keys = generate_node_key(tmp_path, "node0")
    private = serialization.load_ssh_private_key(keys.private_key.read_bytes(), None)
    public = serialization.load_ssh_public_key(keys.public_key.read_bytes())

    # Assert
    assert keys.public_key.read_text().startswith("ecdsa-sha2-nistp384 ")
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert private.public_key().public_numbers() == public.public_numbers()
