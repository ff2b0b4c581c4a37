"""A valid ticket to derive malformed ones from."""

from __future__ import annotations

import pytest

from edgecloud.channel import Handshake
from edgecloud.deploy.certificates import tls_material
from edgecloud.transport import Ticket


@pytest.fixture(scope="session")
def ticket() -> Ticket:
    return Ticket(
        endpoint="127.0.0.1:5000",
        session_id="0123456789abcdef" * 2,
        token=bytes(range(32)),
        expires_at=4_000_000_000.0,
        server_public=Handshake().public_bytes,
        ca_pem=tls_material(("127.0.0.1",)).ca_pem,
    )
