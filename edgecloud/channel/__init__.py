"""Protected smashed-data channel: key agreement, AEAD framing, safe tensor codecs.

No flwr import: the split-learning strategies carry the frames as opaque bytes.
"""

from edgecloud.channel.codecs import CODECS, ErrorFeedback, decode_tensor, encode_tensor
from edgecloud.channel.digest import weights_digest
from edgecloud.channel.errors import ChannelError
from edgecloud.channel.key_agreement import Handshake, SessionKeys
from edgecloud.channel.secure_channel import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    FrameContext,
    SecureChannel,
)

__all__ = [
    "CLIENT_TO_SERVER",
    "CODECS",
    "SERVER_TO_CLIENT",
    "ChannelError",
    "ErrorFeedback",
    "FrameContext",
    "Handshake",
    "SecureChannel",
    "SessionKeys",
    "decode_tensor",
    "encode_tensor",
    "weights_digest",
]
