"""Config-section keys shared by the capabilities that run on the camera testbed.

A testbed capability names a generated testbed directory (``testbed``, which a
SuperNode may override) and a frame size (``frame-size``, ``WIDTHxHEIGHT``), and
loads black boxes from ``<testbed>/models/<name>/``. The checks and their
messages live here once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar

from edgecloud.exceptions import ConfigError
from edgecloud.settings import CLIENT, NODE, NonEmpty, Section

MODELS_DIR = "models"  # black boxes live in <testbed>/models/<name>/
GENERATE = "python -m edgecloud.data.testbed generate --out <dir>"
TRAIN_MODELS = "python -m edgecloud.data.testbed train-models --testbed <dir>"
_FRAME_SIZE = re.compile(r"^(\d+)x(\d+)$")


class TestbedSection(Section):
    """A section with ``testbed`` and ``frame-size`` keys (fields first)."""

    __test__: ClassVar[bool] = False  # not a pytest test class despite the name
    frame_size_example: ClassVar[str] = "160x120"

    testbed: Annotated[NonEmpty, NODE]
    frame_size: Annotated[str, CLIENT]

    @property
    def size(self) -> tuple[int, int]:
        """``frame-size`` as ``(w, h)`` (ConfigError naming the key if unreadable)."""
        match = _FRAME_SIZE.match(self.frame_size)
        if match is None or min(int(match[1]), int(match[2])) < 1:
            raise ConfigError(
                f"run-config key '{self.key_of('frame_size')}' has value "
                f"{self.frame_size!r}; expected WIDTHxHEIGHT in pixels, e.g. "
                f"'{self.frame_size_example}'"
            )
        return int(match[1]), int(match[2])

    def testbed_path(self, source: str = "run-config") -> Path:
        """``testbed`` resolved, with a manifest (ConfigError naming the key if not).

        A relative path resolves against the working directory of the process
        that reads it (the SuperLink's or the SuperNode's).
        """
        from edgecloud.data.testbed.readers import MANIFEST  # PyAV: only when used

        resolved = resolve_path(self.testbed)
        if not (resolved / MANIFEST).is_file():
            raise ConfigError(
                f"{source} key '{self.key_of('testbed')}' has value "
                f"{self.testbed!r} (resolved to {resolved}), which holds no "
                f"{MANIFEST}; expected a generated testbed ({GENERATE})"
            )
        return resolved

    def black_box_meta(self, field_name: str, black_box: str) -> Path:
        """The metadata file of ``black_box`` in the testbed, which must exist.

        ``field_name`` is the field that chose it (named in the error, with the
        black boxes the testbed does have).
        """
        from edgecloud.models.blackbox import META_FILE

        root = self.testbed_path()
        meta = root / MODELS_DIR / black_box / META_FILE
        if not meta.is_file():
            available = sorted(
                p.parent.name for p in (root / MODELS_DIR).glob(f"*/{META_FILE}")
            )
            choices = ", ".join(available) or f"none yet (run '{TRAIN_MODELS}')"
            raise ConfigError(
                f"run-config key '{self.key_of(field_name)}' has value "
                f"{getattr(self, field_name)!r}, but {meta} does not exist; expected "
                f"a black box under {root / MODELS_DIR}: {choices}"
            )
        return meta


def resolve_path(value: str) -> Path:
    """``value`` as an absolute path (relative: against the working directory)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path.cwd() / path
