"""A per-stream PyAV decoder fed only the packets the gate chose and their dependencies.

The decoder context lives for the stream: references decoded in earlier rounds stay
in it. Packets are rebuilt from their bytes with their pts and dts set again (a
packet made from bare bytes has none, and its frame could not be matched to its
label). The caller feeds packets in decode order and only sets that
:class:`~edgecloud.packetgame.dependencies.DependencyState` says are complete
(every reference a packet needs was fed before it), so every frame that comes out
is the frame a full decode gives. As a last guard, a frame whose pts matches no
packet fed since the decoder started is dropped and counted, never handed out
(a decoder may invent one for a missing reference).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import av
import numpy as np
import numpy.typing as npt
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from edgecloud.data.testbed.readers import open_decoder


class EncodedPacket(Protocol):
    """What the decoder needs of a demuxed packet (the testbed's ``PacketInfo``)."""

    @property
    def data(self) -> bytes:
        """The packet's encoded bytes."""

    @property
    def pts(self) -> int:
        """Presentation time stamp, in the stream's time base."""

    @property
    def dts(self) -> int:
        """Decode time stamp, in the stream's time base."""

    @property
    def frame_index(self) -> int:
        """Display index of the packet's frame."""


@dataclass(frozen=True)
class StreamCodec:
    """How to decode a stream: codec name, extradata, coded size, pts/dts time base."""

    name: str  # PyAV decoder name: "h264", "hevc", "vp9"
    extradata: bytes | None
    width: int
    height: int
    time_base: Fraction

    @classmethod
    def of(cls, stream: VideoStream) -> StreamCodec:
        """The codec of a demuxed PyAV video stream."""
        context = stream.codec_context
        if stream.time_base is None:
            raise ValueError(f"stream {stream.index} has no time base")
        return cls(
            context.name,
            context.extradata,
            context.width,
            context.height,
            stream.time_base,
        )


_NO_IMAGE = np.zeros((0, 0, 3), dtype=np.uint8)  # GatedDecoder(images=False)


@dataclass(frozen=True)
class GatedFrame:
    """A decoded frame and the display index of the packet it came from."""

    frame_index: int
    image: npt.NDArray[np.uint8]  # (H, W, 3) RGB


class GatedDecoder:
    """Decodes one stream from the packets it is given, in decode order.

    Parameters
    ----------
    codec : StreamCodec
        The stream's codec name, extradata (parameter sets for H.264 / H.265) and
        time base.
    size : tuple[int, int] | None
        ``(width, height)`` to rescale frames to, or ``None`` for the coded size.
    images : bool
        False: hand out frame indices with an empty ``(0, 0, 3)`` image, skipping
        the RGB conversion (for loops that take a frame's result from a
        reference run, which the bit-identity tests make equal to inferring it).
    """

    def __init__(
        self,
        codec: StreamCodec,
        size: tuple[int, int] | None = None,
        *,
        images: bool = True,
    ) -> None:
        try:
            # single-threaded: frame threading would hold frames back for several
            # packets, and each decode call does its own packet's work
            context = open_decoder(codec)
        except (av.error.FFmpegError, ValueError, AssertionError) as err:
            raise ValueError(
                f"codec {codec.name!r} cannot be decoded here ({err}); expected a "
                "PyAV video decoder name such as 'h264', 'hevc' or 'vp9'"
            ) from None
        self._context = context
        self._codec = codec
        self._size = size
        self._images = images
        self._fed: dict[int, int] = {}  # pts -> frame index of every packet fed
        self._last_dts: int | None = None
        self.dropped_frames = 0  # frames with no packet fed: never handed out
        self.packets_fed = 0
        self.failures = 0  # packets the decoder refused
        # of the last decode() call: packets fed before a failure stopped it, and
        # the failure (None: every packet decoded)
        self.last_fed = 0
        self.last_failure: str | None = None

    def decode(self, packets: Iterable[EncodedPacket]) -> list[GatedFrame]:
        """Feed ``packets`` (decode order); the frames the decoder outputs now.

        With B-frames a frame may come out after later packets are fed
        (the decoder reorders); :meth:`drain` returns what is left at the end.

        A packet the decoder refuses (corrupt or truncated) stops the call:
        :attr:`last_failure` names it, :attr:`last_fed` counts the packets fed
        before it, and the frames of those come out (the context is drained and
        replaced by a fresh one, which must next be fed a random-access packet).
        The refused packet and the rest of the call are not decoded, so no frame
        that may predict from the broken picture is handed out. (A corruption the
        decoder does not notice, such as truncated VP9 tile data, decodes to a
        wrong picture without error: only an integrity check at the source can
        catch that.) Packets out of decode order raise ``ValueError``.
        """
        frames: list[GatedFrame] = []
        self.last_fed, self.last_failure = 0, None
        for packet in packets:
            if self._last_dts is not None and packet.dts <= self._last_dts:
                raise ValueError(
                    f"packet with dts {packet.dts} fed after dts {self._last_dts}; "
                    "expected packets in decode order, each once"
                )
            encoded = av.Packet(packet.data)
            encoded.pts, encoded.dts = packet.pts, packet.dts
            encoded.time_base = self._codec.time_base
            self._fed[packet.pts] = packet.frame_index
            self._last_dts = packet.dts
            self.packets_fed += 1
            try:
                decoded = self._context.decode(encoded)
            except av.error.FFmpegError as err:
                self._fed.pop(packet.pts, None)
                self.failures += 1
                self.last_failure = (
                    f"packet of frame {packet.frame_index} (dts {packet.dts}) does "
                    f"not decode: {err}"
                )
                return frames + self._restart()
            self.last_fed += 1
            frames += self._keep(decoded)
        return frames

    def _restart(self) -> list[GatedFrame]:
        """The frames fed before a failure, then a fresh decoder context."""
        try:
            frames = self._keep(self._context.decode(None))
        except av.error.FFmpegError:
            frames = []
        self._fed.clear()  # nothing fed before the failure may come out later
        self._context = open_decoder(self._codec)
        return frames

    def drain(self) -> list[GatedFrame]:
        """The frames still held for reordering (end of the stream)."""
        return self._keep(self._context.decode(None))

    def _keep(self, decoded: Sequence[av.VideoFrame]) -> list[GatedFrame]:
        kept = []
        for frame in decoded:
            assert isinstance(frame, VideoFrame)
            index = self._fed.pop(frame.pts, None) if frame.pts is not None else None
            if index is None:  # not from a packet we fed: never hand it out
                self.dropped_frames += 1
                continue
            if not self._images:
                kept.append(GatedFrame(index, _NO_IMAGE))
                continue
            if self._size is not None:
                frame = frame.reformat(width=self._size[0], height=self._size[1])
            image = frame.to_ndarray(format="rgb24")
            kept.append(GatedFrame(index, image.astype(np.uint8, copy=False)))
        return kept
