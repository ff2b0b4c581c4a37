"""``[tool.flwr.app.config.infi]``: InFi skip filters across camera nodes (ch. 3)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from edgecloud.capabilities.testbed_section import TestbedSection
from edgecloud.settings import CLIENT, CommonSettings, Count, Positive

# The black box each task filters for. Every one's NONE result is output 0 (no
# person, no vehicle, event "none"), so the redundancy measure is zero_count.
BLACK_BOXES = {
    "person-count": "person-counter",
    "vehicle-count": "vehicle-counter",
    "event": "event-detector",
}
InfiTask = Literal["person-count", "vehicle-count", "event"]
InfiMode = Literal["federated", "local"]
OpenFraction = Annotated[float, Field(gt=0, lt=1)]


class InfiConfig(TestbedSection):
    """Federated vs local-only InFi skip filters (``capability="infi"``).

    Every node builds an image skip dataset from its own cameras: every
    ``frame-stride``-th frame, labelled by the ``task``'s black box at its own
    input size, shown to the filter at ``frame-size``. Per camera, the first
    ``train-fraction`` of the frames is training data, whose last
    ``validation-fraction`` picks the skip threshold for ``target-accuracy``; the
    rest is the test part the node reports on. ``mode="federated"`` averages the
    filters with FedAvg after every round of ``local-epochs``; ``mode="local"``
    trains each node's filter alone for the same rounds and epochs (the
    baseline). The mode reaches the nodes in each message, not the run config, so
    one simulation can run both. ``testbed`` may be overridden per SuperNode.
    """

    section: ClassVar[str] = "infi"
    # No mode_field: "local" is also a dp-mode and a deployment connection name.

    frame_size_example: ClassVar[str] = "80x60"

    mode: InfiMode
    task: Annotated[InfiTask, CLIENT]
    frame_stride: Annotated[Count, CLIENT]
    train_fraction: Annotated[OpenFraction, CLIENT]
    validation_fraction: Annotated[OpenFraction, CLIENT]
    local_epochs: Annotated[Count, CLIENT]
    lr: Annotated[Positive, CLIENT]
    target_accuracy: Annotated[OpenFraction, CLIENT]

    def check(self, common: CommonSettings) -> None:
        """``frame-size`` reads ``WxH``."""
        self.size  # noqa: B018 (parses frame-size)

    def check_server(self, common: CommonSettings) -> None:
        """The testbed and the task's black box exist on the server."""
        self.black_box_meta("task", self.black_box)

    @property
    def black_box(self) -> str:
        """The black box of ``task`` (a directory under ``<testbed>/models``)."""
        return BLACK_BOXES[self.task]
