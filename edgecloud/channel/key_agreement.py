"""Ephemeral X25519 key agreement + HKDF-SHA256: one AES-256 key per direction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from Crypto.Hash import SHA256
from Crypto.Protocol import DH
from Crypto.Protocol.KDF import HKDF
from Crypto.PublicKey import ECC

from edgecloud.channel.errors import ChannelError

_INFO = b"edgecloud/split-channel/v1"


@dataclass(frozen=True)
class SessionKeys:
    """AES-256-GCM keys of one run and node, from one side's point of view."""

    send_key: bytes
    recv_key: bytes


class Handshake:
    """One side of an ephemeral X25519 exchange (a fresh key per run and node).

    Both sides send :attr:`public_bytes` (DER SubjectPublicKeyInfo, 44 bytes) and call
    :meth:`derive` with the peer's; HKDF-SHA256 turns the shared secret into two
    32-byte keys, bound to the run, the node, both public keys and an optional
    ``binding`` (a session ticket's secret token: only a peer that knows it derives
    the same keys).
    """

    def __init__(self) -> None:
        self._private = ECC.generate(curve="curve25519")
        self.public_bytes: bytes = self._private.public_key().export_key(format="DER")

    def derive(
        self,
        peer_public: bytes,
        *,
        is_server: bool,
        run_id: int,
        node_id: int,
        binding: bytes = b"",
    ) -> SessionKeys:
        """Session keys for this side; raises ChannelError for a malformed peer key."""
        try:
            peer = ECC.import_key(peer_public)
        except (ValueError, IndexError, TypeError) as err:
            raise ChannelError(f"peer public key is not an X25519 key: {err}") from err
        if peer.curve != self._private.curve or peer.has_private():
            raise ChannelError("peer key must be a public X25519 key")
        shared = bytes(
            DH.key_agreement(eph_priv=self._private, eph_pub=peer, kdf=lambda z: z)
        )
        server_pub, client_pub = (
            (self.public_bytes, peer_public)
            if is_server
            else (peer_public, self.public_bytes)
        )
        salt = hashlib.sha256(server_pub + client_pub + binding).digest()
        context = _INFO + f"|run={run_id}|node={node_id}".encode()
        keys = HKDF(shared, 32, salt, SHA256, num_keys=2, context=context)
        assert isinstance(keys, list | tuple)  # num_keys=2 -> two keys
        server_to_client, client_to_server = (bytes(k) for k in keys)
        if is_server:
            return SessionKeys(send_key=server_to_client, recv_key=client_to_server)
        return SessionKeys(send_key=client_to_server, recv_key=server_to_client)
