"""Run settings: the common top-level keys, capability sections and the node config.

``[tool.flwr.app.config]`` in ``pyproject.toml`` has common keys at the top level
and one table per capability (``[tool.flwr.app.config.split]``); Flower flattens the
tables to dotted keys (``split.lr``), ``unflatten_dict`` reads them back. Each part
is a frozen pydantic model (:class:`Section`): strict types, bounds as field
constraints, and a :class:`Key` marker saying whether the ClientApp reads the key,
whether it may change on resume and whether a SuperNode may override it. Only the
common keys and the chosen capability's section are required and validated; a key
no section knows fails in every run. Every failure is a
:class:`~edgecloud.exceptions.ConfigError` naming the key, the value and what was
expected.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    Self,
    TypeVar,
    get_args,
)

import annotated_types
from flwr.common.config import unflatten_dict
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from edgecloud.data.partitioning import PartitionSpec
from edgecloud.exceptions import ConfigError
from edgecloud.tasks import TASKS, CameraTask, Task
from edgecloud.types import Scalar

RunConfigValues = Mapping[str, Scalar]


@dataclass(frozen=True)
class Key:
    """What a run-config key means beyond its type and bounds.

    ``client``: the ClientApp acts on it, so runs sharing one simulation (whose
    clients see one run config) must agree on it. ``resumable``: it may differ
    between an interrupted run and its resumption. ``node``: a SuperNode's
    ``--node-config`` may override it (implies ``client``).
    """

    client: bool = False
    resumable: bool = False
    node: bool = False


CLIENT = Key(client=True)
RESUMABLE = Key(resumable=True)
CLIENT_RESUMABLE = Key(client=True, resumable=True)
NODE = Key(client=True, node=True)
NODE_RESUMABLE = Key(client=True, resumable=True, node=True)

# Reusable constraints (intervals are shown as such in error messages).
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
UnitOpen = Annotated[float, Field(ge=0, lt=1)]  # momentum-like: [0, 1)
Count = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonEmpty = Annotated[str, Field(min_length=1, pattern=r"\S")]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class Section(BaseModel):
    """One part of the run config: frozen, strict, kebab-case keys.

    ``section`` is the table name (``"split"`` -> keys ``split.<field>``); the common
    settings use ``""`` (top-level keys). Subclasses add cross-key checks in
    :meth:`check`.
    """

    model_config = ConfigDict(
        frozen=True,
        strict=True,
        extra="forbid",
        allow_inf_nan=False,
        alias_generator=_kebab,
        populate_by_name=True,
    )

    section: ClassVar[str] = ""
    # The field that picks the capability's mode (FL's strategy, split's mode).
    mode_field: ClassVar[str | None] = None

    def check(self, common: CommonSettings) -> None:
        """Checks across keys (and against the common settings); raise ConfigError."""

    def check_server(self, common: CommonSettings) -> None:
        """Checks only the ServerApp can make (files on its machine); ConfigError."""

    # ---------------------------------------------------------------- keys
    @classmethod
    def key_of(cls, field_name: str) -> str:
        """The run-config key of a field: ``split.lr`` for SplitConfig.lr."""
        alias = cls.model_fields[field_name].alias or _kebab(field_name)
        return f"{cls.section}.{alias}" if cls.section else alias

    @classmethod
    def keys(cls) -> dict[str, Key]:
        """Every run-config key of this section with its :class:`Key` marker."""
        return {
            cls.key_of(name): _marker(info) for name, info in cls.model_fields.items()
        }

    @classmethod
    def modes(cls) -> tuple[str, ...]:
        """The values ``mode_field`` allows (empty without one)."""
        if cls.mode_field is None:
            return ()
        return tuple(get_args(cls.model_fields[cls.mode_field].annotation))

    @classmethod
    def client_view(cls, run_config: RunConfigValues) -> dict[str, Scalar]:
        """The values of this section that the ClientApp acts on (unvalidated)."""
        return {
            key: run_config[key]
            for key, marker in cls.keys().items()
            if marker.client and key in run_config
        }

    def to_run_config(self) -> dict[str, Scalar]:
        """The flat (dotted) run-config form of this section."""
        return {
            self.key_of(name): getattr(self, name) for name in type(self).model_fields
        }

    @classmethod
    def parse(cls, values: Mapping[str, Any], sources: Mapping[str, str]) -> Self:
        """Validate one section's values (keys without the section prefix).

        ``sources`` names where a key's value came from when it was not the run
        config (``"node config"`` for a SuperNode's override).
        """
        try:
            return cls.model_validate(dict(values))
        except ValidationError as err:
            raise ConfigError(_describe(cls, err, sources)) from None


class CommonSettings(Section):
    """The top-level keys every run has: what to run, on what data, for how long."""

    capability: str
    # --- the task and its data (read by the ClientApp) ----------------------------
    task: Annotated[str, CLIENT]
    dataset: Annotated[str, CLIENT]
    data_dir: Annotated[NonEmpty, NODE_RESUMABLE]
    data_download: Annotated[bool, CLIENT_RESUMABLE]
    partitioning: Annotated[Literal["iid", "dirichlet", "shards", "by-camera"], CLIENT]
    dirichlet_alpha: Annotated[Positive, CLIENT]
    shards_per_partition: Annotated[Count, CLIENT]
    # --- rounds and sampling ----------------------------------------------------
    num_server_rounds: Annotated[Count, RESUMABLE]
    fraction_train: Annotated[float, Field(gt=0, le=1)]
    min_available_nodes: Annotated[Count, RESUMABLE]
    round_timeout: Annotated[Positive, RESUMABLE]
    # --- local training -----------------------------------------------------------
    local_epochs: Annotated[Count, CLIENT]
    batch_size: Annotated[Count, CLIENT]
    momentum: Annotated[UnitOpen, CLIENT]
    seed: Annotated[NonNegativeInt, CLIENT]
    # --- outputs ------------------------------------------------------------------
    output_dir: Annotated[NonEmpty, RESUMABLE]
    resume: Annotated[bool, RESUMABLE]

    AUTO_DATASET: ClassVar[str] = "auto"

    def check(self, common: CommonSettings) -> None:
        """The task exists, serves the dataset, and has cameras for by-camera."""
        _choice("task", self.task, tuple(TASKS))
        _choice(
            "dataset", self.dataset, (self.AUTO_DATASET, *self.task_plugin.datasets)
        )
        if self.partitioning == "by-camera" and not isinstance(
            self.task_plugin, CameraTask
        ):
            with_cameras = [n for n, t in TASKS.items() if isinstance(t, CameraTask)]
            raise ConfigError(
                f"run-config key 'partitioning' has value 'by-camera' but task "
                f"{self.task!r} has no cameras; expected a task among {with_cameras}"
            )

    @property
    def task_plugin(self) -> Task:
        """The registered task called ``task``."""
        return TASKS[self.task]

    @property
    def resolved_dataset(self) -> str:
        """The dataset actually used: ``dataset``, or the task's first if auto."""
        if self.dataset == self.AUTO_DATASET:
            return self.task_plugin.datasets[0]
        return self.dataset

    @property
    def data_path(self) -> Path:
        """``data-dir`` with ``~`` expanded."""
        return Path(self.data_dir).expanduser()

    @property
    def output_path(self) -> Path:
        """``output-dir`` with ``~`` expanded and made absolute."""
        return Path(self.output_dir).expanduser().absolute()

    def partition_spec(self, num_partitions: int) -> PartitionSpec:
        """How the training set is split across ``num_partitions`` clients."""
        return PartitionSpec(
            method=self.partitioning,
            num_partitions=num_partitions,
            seed=self.seed,
            alpha=self.dirichlet_alpha,
            shards_per_partition=self.shards_per_partition,
        )


SectionT = TypeVar("SectionT", bound=Section)
SectionT_co = TypeVar("SectionT_co", bound=Section, covariant=True)


@dataclass(frozen=True)
class RunSettings(Generic[SectionT_co]):
    """The common settings plus the chosen capability's section, validated."""

    common: CommonSettings
    section: SectionT_co

    def to_run_config(self) -> dict[str, Scalar]:
        """The flat run config these settings were built from (what results record)."""
        return {**self.common.to_run_config(), **self.section.to_run_config()}

    def resumable_keys(self) -> frozenset[str]:
        """Keys that may differ between an interrupted run and its resumption."""
        return frozenset(
            key
            for part in (type(self.common), type(self.section))
            for key, marker in part.keys().items()
            if marker.resumable
        )


def known_keys(sections: Iterable[type[Section]]) -> dict[str, Key]:
    """Every run-config key: the common ones and those of every section."""
    keys = dict(CommonSettings.keys())
    for section in sections:
        keys.update(section.keys())
    return keys


def check_known_keys(
    run_config: RunConfigValues, sections: Iterable[type[Section]]
) -> None:
    """Fail on a key that neither the common settings nor any section defines."""
    known = known_keys(sections)
    unknown = sorted(set(run_config) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown run-config key(s) {unknown}; allowed keys are: "
            f"{', '.join(sorted(known))}"
        )


def load_settings(
    run_config: RunConfigValues, sections: Mapping[str, type[Section]]
) -> RunSettings[Section]:
    """The ServerApp's settings: common keys plus the chosen capability's section.

    Parameters
    ----------
    run_config : Mapping
        Flower's flat ``context.run_config``.
    sections : Mapping
        Capability name -> its section class (the registry's view); a key none of
        them (nor the common settings) defines fails.

    Raises
    ------
    ConfigError
        Unknown, missing, mistyped or out-of-range keys, naming key, value and
        what was expected.
    """
    check_known_keys(run_config, sections.values())
    top, nested = _split_top(run_config)
    _require(CommonSettings, top)
    common = CommonSettings.parse(top, {})
    _choice("capability", common.capability, tuple(sections))
    settings = _with_section(common, sections[common.capability], nested, {})
    settings.section.check_server(common)
    return settings


def load_client_settings(
    run_config: RunConfigValues,
    node_config: RunConfigValues,
    section: type[SectionT],
) -> RunSettings[SectionT]:
    """A ClientApp handler's settings for its own section, parsed once per run.

    The node config may override keys marked ``node`` (e.g. ``data-dir``); any other
    common or section key there is refused. Handlers run once per message; the
    same run and node config give the same immutable settings, so they are
    validated once per process and run.
    """
    return _load_client(
        frozenset(run_config.items()), frozenset(node_config.items()), section
    )


@functools.lru_cache(maxsize=16)
def _load_client(
    run_items: frozenset[tuple[str, Scalar]],
    node_items: frozenset[tuple[str, Scalar]],
    section: type[SectionT],
) -> RunSettings[SectionT]:
    run_config, node_config = dict(run_items), dict(node_items)
    known = {**CommonSettings.keys(), **section.keys()}
    merged, sources = dict(run_config), {}
    for key, value in node_config.items():
        if key not in known:
            continue  # the node's own facts (partition-id, cameras, ...)
        if not known[key].node:
            overridable = sorted(k for k, m in known.items() if m.node)
            raise ConfigError(
                f"node config key '{key}' has value {value!r}, but '{key}' is a "
                "run-wide setting; expected only per-node keys there (a node may "
                f"override: {', '.join(overridable)})"
            )
        merged[key] = value
        sources[key] = "node config"
    top, nested = _split_top(merged)
    _require(CommonSettings, top)
    common = CommonSettings.parse(top, sources)
    return _with_section(common, section, nested, sources)


def _split_top(
    run_config: RunConfigValues,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(top-level keys, nested sections) of a flat run config."""
    nested = unflatten_dict(dict(run_config))
    top = {k: v for k, v in nested.items() if not isinstance(v, dict)}
    return top, nested


def _with_section(
    common: CommonSettings,
    section: type[SectionT],
    nested: Mapping[str, Any],
    sources: Mapping[str, str],
) -> RunSettings[SectionT]:
    values = nested.get(section.section, {})
    _require(section, values)
    parsed = section.parse(values, sources)
    common.check(common)
    parsed.check(common)
    return RunSettings(common, parsed)


# ------------------------------------------------------------------ node config
@dataclass(frozen=True)
class NodeConfig:
    """Per-SuperNode facts from ``context.node_config`` (``--node-config``).

    Simulation injects ``partition-id`` and ``num-partitions``; a real SuperNode
    must be started with them, e.g.
    ``--node-config "partition-id=0 num-partitions=2 data-dir='/data'"``.
    ``cameras`` (optional, camera tasks) gives the node its own camera ids, e.g.
    ``cameras='0,3'``. A node may also override the run-config keys marked
    ``node`` (``data-dir``, ``stip.user-bundle``, ...): those are applied by
    :func:`load_settings`.
    """

    partition_id: int
    num_partitions: int
    cameras: tuple[int, ...] | None = None

    PARTITION_ID: ClassVar[str] = "partition-id"
    NUM_PARTITIONS: ClassVar[str] = "num-partitions"
    CAMERAS: ClassVar[str] = "cameras"

    @classmethod
    def from_node_config(cls, node_config: RunConfigValues) -> NodeConfig:
        """Validate the node's own facts.

        Raises
        ------
        ConfigError
            If ``partition-id`` / ``num-partitions`` are missing or inconsistent, or
            ``cameras`` is not a list of distinct non-negative ints.
        """
        values: dict[str, int] = {}
        for key in (cls.PARTITION_ID, cls.NUM_PARTITIONS):
            if key not in node_config:
                raise ConfigError(
                    f"node config key '{key}' is missing (got keys "
                    f"{sorted(node_config)}); start the SuperNode with "
                    '--node-config "partition-id=<i> num-partitions=<n>"'
                )
            value = node_config[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(
                    f"node config key '{key}' has value {value!r}; expected an integer"
                )
            values[key] = value
        pid, num = values[cls.PARTITION_ID], values[cls.NUM_PARTITIONS]
        if num < 1 or not 0 <= pid < num:
            raise ConfigError(
                f"node config has partition-id={pid}, num-partitions={num}; expected "
                "num-partitions >= 1 and 0 <= partition-id < num-partitions"
            )
        return cls(pid, num, _parse_cameras(node_config.get(cls.CAMERAS)))


def _parse_cameras(value: Scalar | None) -> tuple[int, ...] | None:
    """Node config ``cameras``: an int or a string of comma-separated ints."""
    if value is None:
        return None
    problem = (
        f"node config key '{NodeConfig.CAMERAS}' has value {value!r}; expected "
        "camera ids as an int or a quoted comma-separated list such as '0,3'"
    )
    if isinstance(value, bool):
        raise ConfigError(problem)
    if isinstance(value, int):
        items = [value]
    elif isinstance(value, str):
        try:
            items = [int(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(problem) from None
    else:
        raise ConfigError(problem)
    if not items or min(items) < 0 or len(set(items)) != len(items):
        raise ConfigError(problem + " (non-negative, no duplicates, at least one)")
    return tuple(items)


# ---------------------------------------------------------------- internals
def _marker(info: FieldInfo) -> Key:
    return next((m for m in info.metadata if isinstance(m, Key)), Key())


def _require(section: type[Section], values: Mapping[str, Any]) -> None:
    missing = sorted(
        section.key_of(name)
        for name, info in section.model_fields.items()
        if (info.alias or name) not in values
    )
    if missing:
        table = (
            f"[tool.flwr.app.config.{section.section}]"
            if section.section
            else "[tool.flwr.app.config]"
        )
        raise ConfigError(
            f"run-config key(s) {missing} missing; they must be defined in {table} "
            "of pyproject.toml"
        )


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"run-config key '{key}' has value {value!r}; expected one of: "
            f"{', '.join(allowed)}"
        )


def _describe(
    section: type[Section], err: ValidationError, sources: Mapping[str, str]
) -> str:
    lines = [_describe_one(section, detail, sources) for detail in err.errors()]
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} invalid run-config values: " + "; ".join(lines)


def _describe_one(
    section: type[Section], detail: ErrorDetails, sources: Mapping[str, str]
) -> str:
    alias = str(detail["loc"][0]) if detail["loc"] else "?"
    fields = section.model_fields
    name = next((n for n, info in fields.items() if info.alias == alias), None)
    prefix = f"{section.section}." if section.section else ""
    key = section.key_of(name) if name else prefix + alias
    value, kind = detail["input"], detail["type"]
    if kind == "extra_forbidden":
        return f"unknown run-config key '{key}' (value {value!r})"
    expected = _expected(fields[name], kind, detail) if name else detail["msg"]
    source = sources.get(key, "run-config")
    return f"{source} key '{key}' has value {value!r}; expected {expected}"


_TYPE_NAMES = {
    "bool_type": "a bool (true or false)",
    "int_type": "an int",
    "float_type": "a number",
    "string_type": 'a string (TOML strings need quotes: key="value")',
}


def _expected(info: FieldInfo, kind: str, detail: ErrorDetails) -> str:
    if kind in _TYPE_NAMES:
        return f"{_TYPE_NAMES[kind]}, got a {type(detail['input']).__name__}"
    if kind == "literal_error":
        allowed = getattr(info.annotation, "__args__", ())
        return "one of: " + ", ".join(str(a) for a in allowed)
    if kind in ("string_too_short", "string_pattern_mismatch"):
        return "a non-empty string"
    interval = _interval(info)
    if interval:
        return interval
    return str(detail["msg"]).lower()


def _interval(info: FieldInfo) -> str:
    """``a number in (0, 1]`` from the field's bound constraints, or ``""``."""
    low: Any = None
    high: Any = None
    low_open = high_open = False
    for item in info.metadata:
        if isinstance(item, annotated_types.Gt):
            low, low_open = item.gt, True
        elif isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Lt):
            high, high_open = item.lt, True
        elif isinstance(item, annotated_types.Le):
            high = item.le
    if low is None and high is None:
        return ""
    kind = "an integer" if info.annotation is int else "a number"
    left, right = ("(" if low_open else "["), (")" if high_open else "]")
    low_text = "-inf" if low is None else f"{low:g}"
    high_text = "inf" if high is None else f"{high:g}"
    return f"{kind} in {left}{low_text}, {high_text}{right}"
