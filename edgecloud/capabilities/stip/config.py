"""``[tool.flwr.app.config.stip]``: STIP secure inference (thesis ch. 4, corrected)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from edgecloud.exceptions import ConfigError
from edgecloud.settings import (
    CLIENT,
    NODE,
    CommonSettings,
    Count,
    NonNegativeInt,
    Positive,
)
from edgecloud.workflow.stream import StreamSettings

_DEVELOPER_TOOL = "python -m edgecloud.stip.developer --model <dir> --out <dir>"


class StipConfig(StreamSettings):
    """What the model server serves and what each data owner generates.

    ``server-bundle`` is read by the ServerApp only; ``user-bundle`` and ``prompt``
    may be overridden per SuperNode (``--node-config "stip.user-bundle='/secure/user'
    stip.prompt='Bonjour'"``). Relative bundle paths are resolved against the working
    directory of the process that reads them: the SuperLink's for the server bundle
    (for ``flwr run .`` on the local simulation, the directory where ``flwr`` first
    started the local SuperLink), the SuperNode's for the user bundle. The
    ``transport`` / ``stream-*`` keys choose Flower messages or a streamed session
    per generation (see ``workflow.stream``).
    """

    section: ClassVar[str] = "stip"

    server_bundle: str
    user_bundle: Annotated[str, NODE]
    prompt: Annotated[str, NODE]
    max_new_tokens: Annotated[Count, CLIENT]
    sampling: Annotated[Literal["greedy", "sample"], CLIENT]
    temperature: Annotated[Positive, CLIENT]
    top_k: Annotated[NonNegativeInt, CLIENT]
    output_dir: Annotated[str, CLIENT]

    def check_server(self, common: CommonSettings) -> None:
        """The server bundle exists and is one (data owners never read it)."""
        super().check_server(common)
        self.server_bundle_path()

    def server_bundle_path(self) -> Path:
        """``server-bundle``, resolved and checked (see :func:`resolve_bundle`)."""
        return resolve_bundle(
            self.key_of("server_bundle"), self.server_bundle, "server"
        )


# What each bundle directory must hold: (files, description).
_BUNDLE_FILES = {
    # save_pretrained output: config + weights (one file, or shards + index)
    "server": (
        ("config.json",),
        ("model.safetensors", "model.safetensors.index.json"),
        "the server/ directory of an instance (config.json + model.safetensors)",
    ),
    "user": (
        ("config.json", "stip_user.safetensors"),
        (),
        "the user/ directory of an instance (config.json + stip_user.safetensors)",
    ),
}


def resolve_bundle(key: str, value: str, kind: str, source: str = "run-config") -> Path:
    """The bundle directory ``value`` of ``key``, checked before it is loaded.

    ``kind`` is ``"server"`` or ``"user"``. A relative path is resolved against the
    working directory of this process (see :class:`StipConfig`).

    Raises
    ------
    ConfigError
        Naming the key, the value, the resolved path and what was expected.
    """
    required, any_of, expected = _BUNDLE_FILES[kind]
    head = f"{source} key '{key}' has value {value!r}"
    if not value.strip():
        raise ConfigError(f"{head}; expected {expected} written by '{_DEVELOPER_TOOL}'")
    path = Path(value).expanduser()
    resolved = path if path.is_absolute() else Path.cwd() / path
    where = "" if path.is_absolute() else f" (resolved to {resolved})"
    if not resolved.is_dir():
        raise ConfigError(
            f"{head}{where}, which is not a directory; expected {expected}"
        )
    lacks = [name for name in required if not (resolved / name).is_file()]
    if any_of and not any((resolved / name).is_file() for name in any_of):
        lacks.append(" or ".join(any_of))
    if lacks:
        raise ConfigError(
            f"{head}{where}, which lacks {', '.join(lacks)}; expected {expected}"
        )
    return resolved
