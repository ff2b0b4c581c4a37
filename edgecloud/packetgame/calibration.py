"""Per-picture-type decode costs measured on this machine (the budget's unit: ms)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import av

from edgecloud.data.testbed.readers import CameraVideo
from edgecloud.packetgame.dependencies import DecodeCosts
from edgecloud.packetgame.validation_utils import check_positive_int


def calibrate_decode_costs(
    cameras: Sequence[CameraVideo], max_packets: int = 2000
) -> DecodeCosts:
    """Mean milliseconds of one single-threaded ``decode()`` call per picture type.

    Each camera is decoded in full, in decode order, by a fresh single-threaded
    decoder (:meth:`CameraVideo.make_decoder`, built on ``open_decoder``); every
    ``decode(packet)`` call is timed with ``perf_counter`` and filed under the
    packet's parsed picture type (``PacketInfo.picture_type``: ``"I"``, ``"P"``,
    ``"B"``). Cameras are decoded one after the other until ``max_packets``
    packets were timed in all (a camera is never cut short of its first packet,
    so every camera that is used starts at a random-access point).

    A stream without B-frames (VP9, or ``b_frames=0``) has no ``"B"`` packets:
    the B cost is then set to the P cost (a B picture costs about as much as a P
    one, and the value is never used for such streams). Likewise, if no P packet
    was timed, the P (and B) cost is set to the I cost.

    Parameters
    ----------
    cameras : Sequence[CameraVideo]
        Cameras to decode (at least one).
    max_packets : int
        Upper bound on the packets timed over all cameras (>= 1).

    Returns
    -------
    DecodeCosts
        Mean milliseconds per ``decode()`` call of I, P and B packets.

    Raises
    ------
    ValueError
        Without cameras, with ``max_packets < 1``, or when no I packet was timed.
    """
    if len(cameras) == 0:
        raise ValueError("cameras is empty; expected at least one camera")
    check_positive_int("max_packets", max_packets)
    timings: dict[str, list[float]] = {"I": [], "P": [], "B": []}
    timed = 0
    for camera in cameras:
        if timed >= max_packets:
            break
        decoder = camera.make_decoder()
        with av.open(str(camera.path)) as container:
            time_base = container.streams.video[0].time_base
        if time_base is None:
            raise ValueError(f"{camera.path}: the video stream has no time base")
        for info, _ in camera.packets():
            if timed >= max_packets:
                break
            packet = av.Packet(info.data)
            packet.pts, packet.dts = info.pts, info.dts
            packet.time_base = time_base
            start = time.perf_counter()
            decoder.decode(packet)
            timings[info.picture_type].append(time.perf_counter() - start)
            timed += 1
    if not timings["I"]:
        raise ValueError(
            "no I packet was timed; expected cameras whose streams start with an "
            "I picture"
        )
    intra = 1e3 * statistics.fmean(timings["I"])
    predicted = 1e3 * statistics.fmean(timings["P"]) if timings["P"] else intra
    bidirectional = 1e3 * statistics.fmean(timings["B"]) if timings["B"] else predicted
    return DecodeCosts(intra, predicted, bidirectional)
