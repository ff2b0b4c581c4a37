"""``[tool.flwr.app.config.infi]``: InFi skip filters across camera nodes (ch. 3)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from edgecloud.exceptions import ConfigError
from edgecloud.settings import (
    CLIENT,
    NODE,
    CommonSettings,
    Count,
    NonEmpty,
    Positive,
    Section,
)

MODELS_DIR = "models"  # black boxes live in <testbed>/models/<name>/
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

_FRAME_SIZE = re.compile(r"^(\d+)x(\d+)$")
_GENERATE = "python -m edgecloud.data.testbed generate --out <dir>"
_TRAIN_MODELS = "python -m edgecloud.data.testbed train-models --testbed <dir>"


class InfiConfig(Section):
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

    mode: InfiMode
    testbed: Annotated[NonEmpty, NODE]
    task: Annotated[InfiTask, CLIENT]
    frame_stride: Annotated[Count, CLIENT]
    frame_size: Annotated[str, CLIENT]
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
        from edgecloud.models.blackbox import META_FILE

        root = self.testbed_path()
        meta = root / MODELS_DIR / self.black_box / META_FILE
        if not meta.is_file():
            available = sorted(
                p.parent.name for p in (root / MODELS_DIR).glob(f"*/{META_FILE}")
            )
            choices = ", ".join(available) or f"none yet (run '{_TRAIN_MODELS}')"
            raise ConfigError(
                f"run-config key '{self.key_of('task')}' has value {self.task!r}, "
                f"whose black box {meta} does not exist; expected a testbed with "
                f"{self.black_box!r} under {root / MODELS_DIR} (it has: {choices})"
            )

    @property
    def black_box(self) -> str:
        """The black box of ``task`` (a directory under ``<testbed>/models``)."""
        return BLACK_BOXES[self.task]

    @property
    def size(self) -> tuple[int, int]:
        """``frame-size`` as ``(w, h)``."""
        match = _FRAME_SIZE.match(self.frame_size)
        if match is None or min(int(match[1]), int(match[2])) < 1:
            raise ConfigError(
                f"run-config key '{self.key_of('frame_size')}' has value "
                f"{self.frame_size!r}; expected WIDTHxHEIGHT in pixels, e.g. '80x60'"
            )
        return int(match[1]), int(match[2])

    def testbed_path(self, source: str = "run-config") -> Path:
        """``testbed`` resolved, with a manifest (ConfigError naming the key if not).

        A relative path resolves against the working directory of the process
        that reads it (the SuperLink's or the SuperNode's).
        """
        from edgecloud.data.testbed.readers import MANIFEST

        path = Path(self.testbed).expanduser()
        resolved = path if path.is_absolute() else Path.cwd() / path
        if not (resolved / MANIFEST).is_file():
            raise ConfigError(
                f"{source} key '{self.key_of('testbed')}' has value "
                f"{self.testbed!r} (resolved to {resolved}), which holds no "
                f"{MANIFEST}; expected a generated testbed ({_GENERATE})"
            )
        return resolved
