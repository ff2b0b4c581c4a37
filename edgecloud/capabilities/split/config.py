"""``[tool.flwr.app.config.split]``: SplitNN, U-shaped, SplitFed v1/v2, the channel."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from edgecloud.exceptions import ConfigError
from edgecloud.settings import CLIENT, CommonSettings, Count, Positive
from edgecloud.workflow.stream import StreamSettings

SplitMode = Literal[
    "split", "split-ushaped", "splitfed-v1", "splitfed-v2", "splitfed-local-loss"
]
ChannelCodec = Literal["fp32", "fp16", "bf16", "int8"]  # edgecloud.channel.CODECS


class SplitConfig(StreamSettings):
    """Split learning over the sealed channel (``capability = "split"``).

    ``mode`` picks the protocol; ``lr`` is the SGD learning rate of every part
    (device front, U-shaped head, local-loss auxiliary head, server part);
    ``sync-interval`` is how many rounds SplitFed clients train their own fronts
    between two averagings. The ``transport`` / ``stream-*`` keys choose Flower
    messages or streamed sessions for the steps (see ``workflow.stream``).
    """

    section: ClassVar[str] = "split"
    mode_field: ClassVar[str | None] = "mode"

    mode: SplitMode
    lr: Annotated[Positive, CLIENT]
    sync_interval: Count
    channel_encryption: bool
    channel_codec: ChannelCodec
    channel_error_feedback: bool

    def check(self, common: CommonSettings) -> None:
        """The task must declare a cut point."""
        # A declared flag: building a model (ResNet-18: 11 M parameters) only to
        # look for the cut would be wasted work on every parse.
        if not common.task_plugin.splittable:
            raise ConfigError(
                f"run-config key 'split.mode' has value {self.mode!r} but task "
                f"{common.task!r} declares no cut point; expected a task whose model "
                "is a SplitModel"
            )

    @property
    def ushaped(self) -> bool:
        """Labels and loss stay on the device."""
        return self.mode == "split-ushaped"

    @property
    def local_loss(self) -> bool:
        """The device trains on its own loss; one exchange per round."""
        return self.mode == "splitfed-local-loss"

    @property
    def sequential(self) -> bool:
        """SplitNN variants train clients one after another."""
        return self.mode in ("split", "split-ushaped")
