"""``[tool.flwr.app.config.packetgame]``: PacketGame packet gating (thesis ch. 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from edgecloud.capabilities.testbed_section import TestbedSection, resolve_path
from edgecloud.exceptions import ConfigError
from edgecloud.settings import CLIENT, CommonSettings, Count, NonEmpty, Positive

# policies that gate with a trained predictor
LEARNT = ("packetgame", "packetgame-thesis", "contextual")


class PacketGameConfig(TestbedSection):
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
    model: Annotated[NonEmpty, CLIENT]
    redundancy: Annotated[Literal["count-changed", "event-present"], CLIENT]
    window: Annotated[Count, CLIENT]
    budget: Annotated[float, Field(gt=0, le=1), CLIENT]
    epochs: Annotated[Count, CLIENT]
    lr: Annotated[Positive, CLIENT]
    policy: Annotated[str, CLIENT]
    rounds_per_analytics: Annotated[Count, CLIENT]
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
        meta = self.black_box_meta("model", self.model)
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

    def predictor_path(self) -> Path | None:
        """``predictor`` resolved, or None when it is ``""``."""
        return resolve_path(self.predictor) if self.predictor else None
