"""The server side of split-learning messages: key agreement, sealed frames, records.

A :class:`SealedCodec` is the :class:`~edgecloud.workflow.exchange.Codec` of one
round's exchanges: exchange 0 carries a fresh X25519 public key per client (keys per
round and node) and no frame; every later message and every reply carries one
sealed :mod:`edgecloud.channel` frame bound to run, node, message type, round and
exchange. Replies are opened lazily by the conversation, which knows the shapes it
expects (a frame whose header does not match is rejected before any tensor is built).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.app.typing import ConfigRecordValues

from edgecloud.capabilities.split import keys as k
from edgecloud.capabilities.split.config import SplitConfig
from edgecloud.channel import (
    SERVER_TO_CLIENT,
    ChannelError,
    ErrorFeedback,
    FrameContext,
    Handshake,
    SecureChannel,
)
from edgecloud.types import NDArray
from edgecloud.workflow.records import reply_config, to_record, value_of

# Tensor name -> expected shape (None: any shape) of a frame to open.
Expected = Mapping[str, tuple[int, ...] | None]
ControlValue = ConfigRecordValues


@dataclass
class SplitOut:
    """What the server sends a client in one exchange."""

    control: Mapping[str, ControlValue]
    tensors: dict[str, NDArray] = field(default_factory=dict)
    front: dict[str, NDArray] | None = None  # device weights, in the clear


@dataclass
class SplitIn:
    """A client's reply: its control record, the reply, and its sealed frame."""

    control: ConfigRecord
    reply: Message
    codec: SealedCodec
    node: int
    exchange: int

    def tensors(self, expected: Expected) -> dict[str, NDArray]:
        """Open the reply's frame, checking names, codecs and shapes first."""
        return self.codec.open(self.node, self.control, self.exchange, expected)


class SealedCodec:
    """Encodes :class:`SplitOut`, decodes replies into :class:`SplitIn` (one round).

    Parameters
    ----------
    config : SplitConfig
        Mode, codec, encryption and error feedback.
    run_id, train_id : int
        Bound into frames / identifying this training run to the clients.
    server_round : int
        The round the frames belong to (0 for split inference).
    feedback : dict
        Per-node gradient error feedback, kept across rounds by the workflow.
    """

    message_type = k.MSG_STEP

    def __init__(
        self,
        config: SplitConfig,
        *,
        run_id: int,
        train_id: int,
        server_round: int,
        feedback: dict[int, ErrorFeedback],
    ) -> None:
        self.config, self.run_id, self.train_id = config, run_id, train_id
        self.server_round, self.feedback = server_round, feedback
        self._handshakes: dict[int, Handshake] = {}
        self._sessions: dict[int, SecureChannel] = {}

    def context(self, node: int, exchange: int) -> FrameContext:
        """Where a frame of this round belongs (authenticated, never sent)."""
        return FrameContext(self.run_id, node, k.MSG_STEP, self.server_round, exchange)

    def encode(self, node: int, outgoing: SplitOut, exchange: int) -> RecordDict:
        """Control record (+ key or sealed frame) and, if any, the device weights."""
        control: dict[str, ControlValue] = {
            **outgoing.control,
            k.MODE: self.config.mode,
            k.SERVER_ROUND: self.server_round,
            k.EXCHANGE: exchange,
            k.RUN_ID: self.run_id,
            k.TRAIN_ID: self.train_id,
            k.CODEC: self.config.channel_codec,
        }
        if exchange == 0:
            if self.config.channel_encryption:
                handshake = self._handshakes.setdefault(node, Handshake())
                control[k.SERVER_PUB] = handshake.public_bytes
        else:  # keys exist from the first reply on
            feedback = (
                self.feedback.setdefault(node, ErrorFeedback())
                if self.config.channel_error_feedback
                else None
            )
            control[k.FRAME] = self._sessions[node].seal(
                outgoing.tensors,
                self.context(node, exchange),
                self.config.channel_codec,
                feedback,
            )
        content = RecordDict({k.CONTROL: ConfigRecord(control)})
        if outgoing.front is not None:
            content[k.FRONT] = to_record(outgoing.front)
        return content

    def decode(self, node: int, reply: Message, exchange: int) -> SplitIn:
        """The reply's control record; at exchange 0 also derive the session keys."""
        control = reply_config(reply, k.CONTROL)
        if exchange == 0:
            keys = None
            if self.config.channel_encryption:
                client_pub = value_of(control, k.CLIENT_PUB, bytes)
                keys = self._handshakes[node].derive(
                    client_pub, is_server=True, run_id=self.run_id, node_id=node
                )
            self._sessions[node] = SecureChannel(keys, send_direction=SERVER_TO_CLIENT)
        return SplitIn(control, reply, self, node, exchange)

    def open(
        self, node: int, control: ConfigRecord, exchange: int, expected: Expected
    ) -> dict[str, NDArray]:
        """Open a reply frame (raises ChannelError for anything that does not fit)."""
        frame = control.get(k.FRAME)
        if not isinstance(frame, bytes):
            raise ChannelError("reply carries no frame")
        return self._sessions[node].open(frame, self.context(node, exchange), expected)
