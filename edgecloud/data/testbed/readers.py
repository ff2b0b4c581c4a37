"""Reading a generated testbed: decoded frames or demuxed packets, with labels.

Per camera (:class:`CameraVideo`) or many cameras interleaved as concurrent live
streams (:func:`interleave_live`, one packet per stream per tick). PyAV does the
demuxing and decoding; :mod:`edgecloud.data.bitstream` reads each packet's picture
type and reference flag from its headers.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import av
import numpy as np
import numpy.typing as npt
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

from edgecloud.data.bitstream import BitstreamError, PacketParser, parser_for
from edgecloud.data.testbed.config import TestbedConfig
from edgecloud.data.testbed.labels import (
    CameraLabels,
    FrameLabel,
    ObjectBox,
    read_frame_labels,
    read_object_boxes,
)

MANIFEST = "manifest.json"
# PacketInfo.picture_type of a packet whose headers do not parse
UNREADABLE = "?"
MANIFEST_FORMAT = "edgecloud-testbed/1"


@dataclass(frozen=True)
class PacketInfo:
    """One demuxed (not decoded) video packet.

    ``frame_index`` is the display position (from pts); packets arrive in decode
    order, so with B-frames it is not monotonic. ``keyframe`` is the container's
    flag. The last four fields come from the packet's headers, not from decoding
    (see :class:`edgecloud.data.bitstream.PictureInfo`): ``picture_type`` is
    ``"I"``, ``"P"`` or ``"B"``, what the decoder reports for the frame;
    ``reference`` whether later pictures may predict from it (false: dropping it
    harms no other picture); ``random_access`` whether decoding can start at it
    (H.264 IDR, H.265 IRAP, VP9 key frame); ``leading`` is ``"RADL"`` or ``"RASL"``
    for H.265 leading pictures (RASL ones, from x265's open GOPs, reference the
    previous GOP), else ``""``.
    """

    camera_id: int
    decode_index: int
    frame_index: int
    pts: int
    dts: int
    time_s: float
    size: int
    keyframe: bool
    data: bytes
    picture_type: str
    reference: bool
    random_access: bool
    leading: str


@dataclass(frozen=True)
class DecodedFrame:
    """A decoded picture with its ground truth and picture type (I, P or B)."""

    camera_id: int
    frame_index: int
    image: npt.NDArray[np.uint8]  # (H, W, 3) RGB
    picture_type: str
    label: FrameLabel


@dataclass(frozen=True)
class LivePacket:
    """A packet of one stream at one tick of :func:`interleave_live`."""

    tick: int
    packet: PacketInfo
    label: FrameLabel


class CameraVideo:
    """One camera of a testbed: its video file and its labels."""

    def __init__(self, root: Path, entry: dict[str, Any], fps: int) -> None:
        self.root = root
        self.camera_id = int(entry["camera_id"])
        self.path = root / str(entry["video"])
        self._frames_csv = root / str(entry["frames_csv"])
        self._objects_csv = root / str(entry["objects_csv"])
        self.split = str(entry["split"])
        self.fps = fps

    @functools.cached_property
    def labels(self) -> CameraLabels:
        """Per-frame ground truth (parsed once)."""
        return read_frame_labels(self._frames_csv)

    def objects(self) -> list[ObjectBox]:
        """Per-object boxes of every frame."""
        return read_object_boxes(self._objects_csv)

    def _frame_index(self, pts: int | None, time_base: Any) -> int:
        if pts is None:
            raise ValueError(f"{self.path}: a packet or frame has no pts")
        return round(float(pts * time_base) * self.fps)

    def frames(
        self, size: tuple[int, int] | None = None, every: int = 1
    ) -> Iterator[DecodedFrame]:
        """Decode every frame (display order); ``size=(w, h)`` rescales with swscale.

        Only every ``every``-th frame is converted to RGB (all are decoded: the
        codec needs them as references).
        """
        labels = self.labels.frames
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                index = self._frame_index(frame.pts, stream.time_base)
                if index % every:
                    continue
                if size is None:
                    image = frame.to_ndarray(format="rgb24")
                else:
                    image = frame.to_ndarray(
                        format="rgb24",
                        width=size[0],
                        height=size[1],
                        interpolation="AREA",
                    )
                yield DecodedFrame(
                    self.camera_id,
                    index,
                    np.asarray(image, dtype=np.uint8),
                    PictureType(frame.pict_type).name,
                    labels[index],
                )

    def packets(
        self, unreadable: Literal["raise", "mark"] = "raise"
    ) -> Iterator[tuple[PacketInfo, FrameLabel]]:
        """Demux video packets in decode order, with the label of their frame.

        Each packet's picture type and reference flag are parsed from its headers
        (a few microseconds a packet; nothing is decoded). A packet whose headers
        do not parse raises :class:`BitstreamError` naming the file and packet,
        or with ``unreadable="mark"`` is yielded with ``picture_type`` ``"?"``,
        ``reference`` True (later packets may need it) and ``random_access``
        False, for a caller that skips it and what depends on it.
        """
        labels = self.labels.frames
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            parse = _picture_parser(stream.codec_context)
            decode_index = 0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                index = self._frame_index(packet.pts, stream.time_base)
                data = bytes(packet)
                try:
                    picture = parse(data)
                except BitstreamError as exc:
                    if unreadable == "raise":
                        raise BitstreamError(
                            f"{self.path}: packet {decode_index}: {exc}"
                        ) from exc
                    picture = None
                info = PacketInfo(
                    camera_id=self.camera_id,
                    decode_index=decode_index,
                    frame_index=index,
                    pts=int(packet.pts or 0),
                    dts=int(packet.dts if packet.dts is not None else packet.pts or 0),
                    time_s=index / self.fps,
                    size=packet.size,
                    keyframe=bool(packet.is_keyframe),
                    data=data,
                    picture_type=picture.picture_type if picture else UNREADABLE,
                    reference=picture.reference if picture else True,
                    random_access=picture.random_access if picture else False,
                    leading=picture.leading if picture else "",
                )
                decode_index += 1
                yield info, labels[index]

    def picture_parser(self) -> PacketParser:
        """The parser of this stream's packet headers (:mod:`edgecloud.data.bitstream`).

        It turns ``info.data`` into a :class:`~edgecloud.data.bitstream.PictureInfo`
        (what :meth:`packets` fills in; the H.265 NAL unit type too).
        """
        with av.open(str(self.path)) as container:
            return _picture_parser(container.streams.video[0].codec_context)

    def make_decoder(self) -> VideoCodecContext:
        """A fresh decoder for this stream, fed with ``av.Packet(info.data)``."""
        with av.open(str(self.path)) as container:
            return open_decoder(container.streams.video[0].codec_context)

    def audio(self) -> tuple[npt.NDArray[np.float32], int]:
        """The decoded audio track (mono float32) and its sample rate.

        The rate is the decoder's (Opus decodes at 48 kHz whatever was encoded);
        ``(empty, 0)`` if the file has no audio track.
        """
        with av.open(str(self.path)) as container:
            if not container.streams.audio:
                return np.zeros(0, np.float32), 0
            stream = container.streams.audio[0]
            chunks = [
                frame.to_ndarray().reshape(-1) for frame in container.decode(stream)
            ]
            rate = int(stream.codec_context.sample_rate or 0)
        if not chunks:
            return np.zeros(0, np.float32), rate
        return np.concatenate(chunks).astype(np.float32), rate


@dataclass(frozen=True)
class Testbed:
    """A generated testbed on disk: its settings and its cameras."""

    __test__: ClassVar[bool] = False  # not a pytest test class despite the name

    root: Path
    config: TestbedConfig
    cameras: tuple[CameraVideo, ...]

    def camera(self, camera_id: int) -> CameraVideo:
        """The camera with id ``camera_id``."""
        for cam in self.cameras:
            if cam.camera_id == camera_id:
                return cam
        raise ValueError(
            f"camera {camera_id} not in testbed {self.root}; expected one of "
            f"{[c.camera_id for c in self.cameras]}"
        )


def _picture_parser(codec: Any) -> PacketParser:
    extradata = codec.extradata
    return parser_for(str(codec.name), bytes(extradata) if extradata else None)


def open_decoder(params: Any) -> VideoCodecContext:
    """A single-threaded decoder configured like the stream ``params`` describe.

    Single-threaded so that each ``decode(packet)`` call does that packet's work
    (what the per-picture-type cost model times).
    """
    decoder = av.CodecContext.create(params.name, "r")
    assert isinstance(decoder, VideoCodecContext)
    if params.extradata:
        decoder.extradata = params.extradata
    decoder.width, decoder.height = params.width, params.height
    decoder.thread_count = 1
    return decoder


def load_testbed(root: Path) -> Testbed:
    """Open the testbed whose ``manifest.json`` lies in ``root``."""
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no testbed manifest at {path}; generate one with "
            "'python -m edgecloud.data.testbed generate --out <dir>'"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(
            f"{path} has format {manifest.get('format')!r}; "
            f"expected {MANIFEST_FORMAT!r}"
        )
    cfg = TestbedConfig.from_dict(manifest["config"])
    cams = tuple(CameraVideo(root, entry, cfg.fps) for entry in manifest["cameras"])
    return Testbed(root, cfg, cams)


def interleave_live(
    videos: Sequence[CameraVideo],
) -> Iterator[LivePacket]:
    """Many cameras as concurrent live streams: at each tick, one packet per stream.

    Streams that have ended drop out; the iteration stops when all have ended.
    """
    iterators = [v.packets() for v in videos]
    tick = 0
    while iterators:
        alive = []
        for it in iterators:
            item = next(it, None)
            if item is None:
                continue
            alive.append(it)
            yield LivePacket(tick, item[0], item[1])
        iterators = alive
        tick += 1
