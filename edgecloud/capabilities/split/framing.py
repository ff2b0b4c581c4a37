"""The server side of split-learning exchanges: keys, sealed frames, both transports.

Over messages a :class:`SealedCodec` is one round's codec: exchange 0 carries a
fresh X25519 public key per client (keys per round and node) and no frame; every
later message and every reply carries one sealed :mod:`edgecloud.channel` frame
bound to run, node, message type, round and exchange, and the device weights go in
a plain ArrayRecord (their digest inside the sealed frame). Over a streamed session
a :class:`StreamSealedCodec` uses the session's keys (agreed when the client proved
it holds its ticket) and sends every value sealed: a control frame, a tensor frame
and, when weights travel, a front frame. Either way the conversation reads a
:class:`SplitIn` and opens the tensors lazily, with the shapes it expects (a frame
whose header does not match is rejected before any tensor is built).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    SessionKeys,
)
from edgecloud.channel.envelope import open_control, pack, seal_control, unpack
from edgecloud.types import NDArray
from edgecloud.workflow.keys import METRICS
from edgecloud.workflow.records import (
    from_record,
    reply_arrays,
    reply_config,
    reply_metrics,
    to_record,
    value_of,
)

# Tensor name -> expected shape (None: any shape) of a frame to open.
Expected = Mapping[str, tuple[int, ...] | None]
ControlValue = ConfigRecordValues


@dataclass
class SplitOut:
    """What the server sends a client in one exchange."""

    control: Mapping[str, ControlValue]
    tensors: dict[str, NDArray] = field(default_factory=dict)
    front: dict[str, NDArray] | None = None  # device weights


class SplitIn(Protocol):
    """A client's reply as the conversation reads it, whatever carried it."""

    @property
    def control(self) -> Mapping[str, Any]:
        """The reply's control values (``num-steps``, ...)."""

    def tensors(self, expected: Expected) -> dict[str, NDArray]:
        """Open the reply's tensors, checking names, codecs and shapes first."""

    def front(self) -> dict[str, NDArray]:
        """The trained device weights of the final reply (after :meth:`tensors`)."""

    def metrics(self) -> Mapping[str, Any]:
        """The final reply's metrics (``num-examples``, ...)."""


class _Framing:
    """What both codecs share: the round's identity and the frame context."""

    def __init__(
        self,
        config: SplitConfig,
        *,
        run_id: int,
        train_id: int,
        server_round: int,
        feedback: dict[int, ErrorFeedback],
        message_type: str,
    ) -> None:
        self.config, self.run_id, self.train_id = config, run_id, train_id
        self.server_round, self.feedback = server_round, feedback
        self.message_type = message_type

    def context(self, node: int, exchange: int) -> FrameContext:
        """Where a frame of this round belongs (authenticated, never sent)."""
        return FrameContext(
            self.run_id, node, self.message_type, self.server_round, exchange
        )

    def control(self, outgoing: SplitOut, exchange: int) -> dict[str, ControlValue]:
        """The step's control values plus the round's identity."""
        return {
            **outgoing.control,
            k.MODE: self.config.mode,
            k.SERVER_ROUND: self.server_round,
            k.EXCHANGE: exchange,
            k.RUN_ID: self.run_id,
            k.TRAIN_ID: self.train_id,
            k.CODEC: self.config.channel_codec,
        }

    def seal_tensors(
        self, channel: SecureChannel, node: int, outgoing: SplitOut, exchange: int
    ) -> bytes:
        """The tensor frame (gradients get the node's error feedback, if on)."""
        feedback = (
            self.feedback.setdefault(node, ErrorFeedback())
            if self.config.channel_error_feedback
            else None
        )
        return channel.seal(
            outgoing.tensors,
            self.context(node, exchange),
            self.config.channel_codec,
            feedback,
        )


@dataclass
class MessageSplitIn:
    """A reply message: control record, the message, its sealed frame."""

    control: ConfigRecord
    reply: Message
    codec: SealedCodec
    node: int
    exchange: int

    def tensors(self, expected: Expected) -> dict[str, NDArray]:
        """Open the reply's frame."""
        return self.codec.open(self.node, self.control, self.exchange, expected)

    def front(self) -> dict[str, NDArray]:
        """The device weights (a plain ArrayRecord; checked against the digest)."""
        return from_record(reply_arrays(self.reply, k.FRONT))

    def metrics(self) -> Mapping[str, Any]:
        """The reply's MetricRecord."""
        return reply_metrics(self.reply, METRICS)


class SealedCodec(_Framing):
    """Encodes :class:`SplitOut` as messages, decodes replies (one round).

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

    def __init__(
        self,
        config: SplitConfig,
        *,
        run_id: int,
        train_id: int,
        server_round: int,
        feedback: dict[int, ErrorFeedback],
    ) -> None:
        super().__init__(
            config,
            run_id=run_id,
            train_id=train_id,
            server_round=server_round,
            feedback=feedback,
            message_type=k.MSG_STEP,
        )
        self._handshakes: dict[int, Handshake] = {}
        self._sessions: dict[int, SecureChannel] = {}

    def encode(self, node: int, outgoing: SplitOut, exchange: int) -> RecordDict:
        """Control record (+ key or sealed frame) and, if any, the device weights."""
        control = self.control(outgoing, exchange)
        if exchange == 0:
            if self.config.channel_encryption:
                handshake = self._handshakes.setdefault(node, Handshake())
                control[k.SERVER_PUB] = handshake.public_bytes
        else:  # keys exist from the first reply on
            channel = self._sessions[node]
            control[k.FRAME] = self.seal_tensors(channel, node, outgoing, exchange)
        content = RecordDict({k.CONTROL: ConfigRecord(control)})
        if outgoing.front is not None:
            content[k.FRONT] = to_record(outgoing.front)
        return content

    def decode(self, node: int, reply: Message, exchange: int) -> MessageSplitIn:
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
        return MessageSplitIn(control, reply, self, node, exchange)

    def open(
        self, node: int, control: ConfigRecord, exchange: int, expected: Expected
    ) -> dict[str, NDArray]:
        """Open a reply frame (raises ChannelError for anything that does not fit)."""
        frame = control.get(k.FRAME)
        if not isinstance(frame, bytes):
            raise ChannelError("reply carries no frame")
        return self._sessions[node].open(frame, self.context(node, exchange), expected)


@dataclass
class StreamSplitIn:
    """A stream reply: its control values and its still-sealed frames, in order."""

    control: dict[str, Any]
    frames: list[bytes]
    channel: SecureChannel
    context: FrameContext

    def tensors(self, expected: Expected) -> dict[str, NDArray]:
        """Open the tensor frame."""
        return self.channel.open(self._frame(0), self.context, expected)

    def front(self) -> dict[str, NDArray]:
        """Open the front frame (sealed like every other value on the stream)."""
        return self.channel.open(self._frame(1), self.context)

    def metrics(self) -> Mapping[str, Any]:
        """The metrics in the control values of the final reply."""
        metrics = self.control.get(k.METRICS)
        if not isinstance(metrics, dict):
            raise ChannelError("final stream reply carries no metrics")
        return metrics

    def _frame(self, index: int) -> bytes:
        if index >= len(self.frames):
            raise ChannelError(f"stream reply has no frame {index + 1}")
        return self.frames[index]


class StreamSealedCodec(_Framing):
    """Encodes :class:`SplitOut` as stream messages over the sessions' keys."""

    def __init__(
        self,
        config: SplitConfig,
        keys: Mapping[int, SessionKeys],
        *,
        run_id: int,
        train_id: int,
        server_round: int,
        feedback: dict[int, ErrorFeedback],
    ) -> None:
        super().__init__(
            config,
            run_id=run_id,
            train_id=train_id,
            server_round=server_round,
            feedback=feedback,
            message_type=k.MSG_SESSION,
        )
        on = config.channel_encryption
        self._channels = {
            node: SecureChannel(key if on else None, send_direction=SERVER_TO_CLIENT)
            for node, key in keys.items()
        }

    def encode(self, node: int, outgoing: SplitOut, exchange: int) -> bytes:
        """Control frame, tensor frame and, with weights, a front frame."""
        channel, context = self._channels[node], self.context(node, exchange)
        frames = [
            seal_control(channel, self.control(outgoing, exchange), context),
            self.seal_tensors(channel, node, outgoing, exchange),
        ]
        if outgoing.front is not None:
            frames.append(channel.seal(outgoing.front, context))
        return pack(frames)

    def decode(self, node: int, message: bytes, exchange: int) -> StreamSplitIn:
        """Open the control frame; the others wait for the shapes expected."""
        channel, context = self._channels[node], self.context(node, exchange)
        frames = unpack(message)
        return StreamSplitIn(
            open_control(channel, frames[0], context), frames[1:], channel, context
        )
