"""``[tool.flwr.app.config.packetgame]``: PacketGame packet gating (thesis ch. 2)."""

from __future__ import annotations

import json
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
_FRAME_SIZE = re.compile(r"^(\d+)x(\d+)$")
_GENERATE = "python -m edgecloud.data.testbed generate --out <dir>"
_TRAIN_MODELS = "python -m edgecloud.data.testbed train-models --testbed <dir>"
# policies that gate with a trained predictor
LEARNT = ("packetgame", "packetgame-thesis", "contextual")


class PacketGameConfig(Section):
    """Federated predictor training and live analytics (``capability="packetgame"``).

    ``mode="train"`` trains the contextual predictor with FedAvg over
    ``num-server-rounds`` (each edge server fits it on the feedback log of its own
    cameras), then runs ``policy`` with it on every node's live streams;
    ``mode="analytics"`` runs ``policy`` once for ``rounds-per-analytics`` live
    rounds with the predictor in ``predictor`` (a file a train run wrote into its
    output-dir; ``""`` only for policies without a predictor). ``budget`` is the
    decode budget per live round as a fraction of decoding every arrived packet,
    held in a token bucket of one round's budget plus one I picture (a node's few
    streams may cost less than one I picture per round). ``testbed`` may be
    overridden per SuperNode; a relative path resolves against the working
    directory of the process that reads it.
    """

    section: ClassVar[str] = "packetgame"
    # No mode_field: "train" is also a Flower message category and a camera split.

    mode: Literal["train", "analytics"]
    testbed: Annotated[NonEmpty, NODE]
    model: Annotated[NonEmpty, CLIENT]
    redundancy: Annotated[Literal["count-changed", "event-present"], CLIENT]
    window: Annotated[Count, CLIENT]
    budget: Annotated[float, Field(gt=0, le=1), CLIENT]
    epochs: Annotated[Count, CLIENT]
    lr: Annotated[Positive, CLIENT]
    policy: Annotated[str, CLIENT]
    rounds_per_analytics: Annotated[Count, CLIENT]
    frame_size: Annotated[str, CLIENT]
    predictor: str

    def check(self, common: CommonSettings) -> None:
        """``policy`` is a known policy and ``frame-size`` reads ``WxH``."""
        from edgecloud.packetgame.policies import POLICIES  # PyAV: only when used

        if self.policy not in POLICIES:
            raise ConfigError(
                f"run-config key '{self.key_of('policy')}' has value "
                f"{self.policy!r}; expected one of: {', '.join(POLICIES)}"
            )
        self.size  # noqa: B018 (parses frame-size)
        if self.mode == "analytics" and not self.predictor and self.policy in LEARNT:
            raise ConfigError(
                f"run-config key '{self.key_of('predictor')}' is empty with "
                f"{self.key_of('policy')}={self.policy!r} in analytics mode; expected "
                'a predictor file written by a packetgame.mode="train" run (an '
                "untrained predictor would gate at random)"
            )

    def check_server(self, common: CommonSettings) -> None:
        """The testbed, its black box and the predictor file exist on the server."""
        from edgecloud.models.blackbox import META_FILE

        root = self.testbed_path()
        meta = root / MODELS_DIR / self.model / META_FILE
        if not meta.is_file():
            available = sorted(
                p.parent.name for p in (root / MODELS_DIR).glob(f"*/{META_FILE}")
            )
            choices = ", ".join(available) or f"none yet (run '{_TRAIN_MODELS}')"
            raise ConfigError(
                f"run-config key '{self.key_of('model')}' has value {self.model!r}, "
                f"but {meta} does not exist; expected a black box under "
                f"{root / MODELS_DIR}: {choices}"
            )
        slots = json.loads(meta.read_text()).get("spec", {}).get("slots", 1)
        if slots != 1:
            raise ConfigError(
                f"run-config key '{self.key_of('model')}' has value {self.model!r}, "
                f"a model with {slots} outputs per frame; expected a model with one "
                "class index per frame (not the sequence reader)"
            )
        if self.predictor:
            path = self.predictor_path()
            if path is None or not path.is_file():
                raise ConfigError(
                    f"run-config key '{self.key_of('predictor')}' has value "
                    f"{self.predictor!r} (resolved to {path}), which is not a file; "
                    'expected a predictor written by a packetgame.mode="train" run '
                    '(<output-dir>/packetgame-predictor.pt) or ""'
                )

    @property
    def size(self) -> tuple[int, int]:
        """``frame-size`` as ``(w, h)``."""
        match = _FRAME_SIZE.match(self.frame_size)
        if match is None or min(int(match[1]), int(match[2])) < 1:
            raise ConfigError(
                f"run-config key '{self.key_of('frame_size')}' has value "
                f"{self.frame_size!r}; expected WIDTHxHEIGHT in pixels, e.g. '160x120'"
            )
        return int(match[1]), int(match[2])

    def testbed_path(self, source: str = "run-config") -> Path:
        """``testbed`` resolved, with a manifest (ConfigError naming the key if not)."""
        from edgecloud.data.testbed.readers import MANIFEST

        resolved = _resolve(self.testbed)
        if not (resolved / MANIFEST).is_file():
            raise ConfigError(
                f"{source} key '{self.key_of('testbed')}' has value "
                f"{self.testbed!r} (resolved to {resolved}), which holds no "
                f"{MANIFEST}; expected a generated testbed ({_GENERATE})"
            )
        return resolved

    def predictor_path(self) -> Path | None:
        """``predictor`` resolved, or None when it is ``""``."""
        return _resolve(self.predictor) if self.predictor else None


def _resolve(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path.cwd() / path
