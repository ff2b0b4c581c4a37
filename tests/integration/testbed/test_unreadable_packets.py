"""A packet whose headers do not parse: a one-line error, or marked for the caller."""

from __future__ import annotations

from typing import Any

import pytest

from edgecloud.data.bitstream import BitstreamError, PacketParser
from edgecloud.data.testbed import Testbed, readers
from edgecloud.data.testbed.readers import UNREADABLE


@pytest.fixture
def third_packet_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real parser, failing on the third packet it is given."""
    real = readers._picture_parser

    def failing(codec: Any) -> PacketParser:
        parse = real(codec)
        seen = [0]

        def parser(data: bytes) -> Any:
            seen[0] += 1
            if seen[0] == 3:
                raise BitstreamError("slice header: exp-Golomb code runs past the end")
            return parse(data)

        return parser  # type: ignore[return-value]

    monkeypatch.setattr(readers, "_picture_parser", failing)


@pytest.mark.usefixtures("third_packet_unreadable")
def test_an_unreadable_packet_raises_naming_file_and_packet(
    tiny_testbed: Testbed,
) -> None:
    camera = tiny_testbed.camera(0)
    with pytest.raises(BitstreamError, match=r"cam00\.mp4: packet 2: slice header"):
        list(camera.packets())


@pytest.mark.usefixtures("third_packet_unreadable")
def test_an_unreadable_packet_is_marked_on_request(tiny_testbed: Testbed) -> None:
    # Execute
    packets = [p for p, _ in tiny_testbed.camera(0).packets(unreadable="mark")]

    # Assert: one marked packet, conservatively a reference and no access point;
    # the others parsed as usual
    marked = [p for p in packets if p.picture_type == UNREADABLE]
    assert [p.decode_index for p in marked] == [2]
    assert marked[0].reference and not marked[0].random_access
    assert {p.picture_type for p in packets} - {UNREADABLE} <= {"I", "P", "B"}
