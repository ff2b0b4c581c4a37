"""The run configuration: one frozen dataclass built and validated from run_config.

Every key of ``[tool.flwr.app.config]`` in ``pyproject.toml`` maps to one field of
:class:`RunConfig` (kebab-case key -> snake_case field). Validation happens once, in
:meth:`RunConfig.from_run_config`, before any round: an unknown key, a value of the
wrong type or a value out of range raises :class:`~edgecloud.exceptions.ConfigError`
naming the key, the value received and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgecloud.channel import CODECS
from edgecloud.data.partitioning import PartitionSpec
from edgecloud.exceptions import ConfigError
from edgecloud.protocol import (
    NODE_CAMERAS,
    NODE_DATA_DIR,
    NODE_NUM_PARTITIONS,
    NODE_PARTITION_ID,
    NODE_STIP_PROMPT,
    NODE_STIP_USER_BUNDLE,
)
from edgecloud.strategies import (
    SECURE_INFERENCE,
    SPLIT_NAMES,
    STRATEGY_NAMES,
    BaselineParams,
    DpParams,
    SplitParams,
)
from edgecloud.tasks import TASKS

Scalar = bool | int | float | str

PARTITIONINGS = ("iid", "dirichlet", "shards", "by-camera")
STIP_SAMPLING = ("greedy", "sample")
DP_MODES = (
    "none",
    "server-fixed",
    "server-adaptive",
    "client-fixed",
    "client-adaptive",
    "local",
)
QUANTIZATION_BITS = (0, 8, 16)
AUTO_DATASET = "auto"


@dataclass(frozen=True)
class _Bounds:
    """Allowed numeric interval; ``None`` means unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (
            value < self.low or (self.low_open and value == self.low)
        ):
            return False
        return not (
            self.high is not None
            and (value > self.high or (self.high_open and value == self.high))
        )

    def describe(self) -> str:
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"a number in {left}{low}, {high}{right}"


_POSITIVE = _Bounds(low=0.0, low_open=True)
_NON_NEGATIVE = _Bounds(low=0.0)
_FRACTION = _Bounds(low=0.0, high=1.0)
_OPEN_UNIT = _Bounds(low=0.0, high=1.0, low_open=True, high_open=True)
_AT_LEAST_ONE = _Bounds(low=1)


@dataclass(frozen=True)
class RunConfig:
    """Validated run configuration (``[tool.flwr.app.config]`` + ``--run-config``).

    Field names are the snake_case form of the kebab-case run-config keys; see the
    README's configuration table for what each one does.
    """

    # --- what to run --------------------------------------------------------------
    strategy: str
    task: str
    dataset: str
    data_dir: str
    data_download: bool
    # --- data partitioning ----------------------------------------------------
    partitioning: str
    dirichlet_alpha: float
    shards_per_partition: int
    # --- rounds and sampling --------------------------------------------------
    num_server_rounds: int
    fraction_train: float
    fraction_evaluate: float
    min_available_nodes: int
    round_timeout: float
    # --- local training -------------------------------------------------------
    local_epochs: int
    batch_size: int
    lr: float
    momentum: float
    seed: int
    # --- outputs --------------------------------------------------------------
    output_dir: str
    resume: bool
    # --- strategy hyper-parameters --------------------------------------------
    proximal_mu: float
    server_lr: float
    server_momentum: float
    fedopt_eta: float
    fedopt_beta_1: float
    fedopt_beta_2: float
    fedopt_tau: float
    trimmed_beta: float
    num_malicious_nodes: int
    num_nodes_to_select: int
    qffl_q: float
    # --- differential privacy -------------------------------------------------
    dp_mode: str
    dp_noise_multiplier: float
    dp_clipping_norm: float
    dp_num_sampled_clients: int
    dp_target_clipped_quantile: float
    dp_clip_norm_lr: float
    dp_epsilon: float
    dp_delta: float
    dp_sensitivity: float
    # --- update compression ---------------------------------------------------
    update_quantization_bits: int
    # --- split learning and its protected channel -----------------------------
    channel_encryption: bool
    channel_codec: str
    channel_error_feedback: bool
    split_sync_interval: int
    split_lr: float
    # --- STIP secure inference ------------------------------------------------
    stip_server_bundle: str
    stip_user_bundle: str
    stip_prompt: str
    stip_max_new_tokens: int
    stip_sampling: str
    stip_temperature: float
    stip_top_k: int
    stip_output_dir: str

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, Scalar]) -> RunConfig:
        """Build and validate the config from Flower's ``context.run_config``.

        Raises
        ------
        ConfigError
            If a key is unknown or missing, or a value has the wrong type or is out
            of range. The message names the key, the value and what was expected.
        """
        expected = {_key(f.name): f for f in dataclasses.fields(cls)}
        unknown = sorted(set(run_config) - set(expected))
        if unknown:
            raise ConfigError(
                f"unknown run-config key(s) {unknown}; allowed keys are: "
                f"{', '.join(sorted(expected))}"
            )
        missing = sorted(set(expected) - set(run_config))
        if missing:
            raise ConfigError(
                f"run-config key(s) {missing} missing; they must be defined in "
                "[tool.flwr.app.config] of pyproject.toml"
            )
        values = {
            field.name: _check_type(key, run_config[key], field.type)
            for key, field in expected.items()
        }
        config = cls(**values)  # type: ignore[arg-type]  # types checked above
        config._validate()
        return config

    def replace(self, **changes: Scalar) -> RunConfig:
        """Return a validated copy with some fields changed (snake_case names)."""
        config = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        config._validate()
        return config

    def to_run_config(self) -> dict[str, Scalar]:
        """Return the kebab-case mapping this config was built from."""
        return {_key(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def resolved_dataset(self) -> str:
        """The dataset actually used: ``dataset``, or the task's default if auto."""
        if self.dataset == AUTO_DATASET:
            return TASKS[self.task].datasets[0]
        return self.dataset

    @property
    def data_path(self) -> Path:
        """``data-dir`` with ``~`` expanded."""
        return Path(self.data_dir).expanduser()

    @property
    def output_path(self) -> Path:
        """``output-dir`` with ``~`` expanded and made absolute."""
        return Path(self.output_dir).expanduser().absolute()

    def baseline_params(self) -> BaselineParams:
        """Sampling and hyper-parameters for the FL baseline strategies."""
        return BaselineParams(
            fraction_train=self.fraction_train,
            fraction_evaluate=self.fraction_evaluate,
            min_available_nodes=self.min_available_nodes,
            client_lr=self.lr,
            proximal_mu=self.proximal_mu,
            server_lr=self.server_lr,
            server_momentum=self.server_momentum,
            fedopt_eta=self.fedopt_eta,
            fedopt_beta_1=self.fedopt_beta_1,
            fedopt_beta_2=self.fedopt_beta_2,
            fedopt_tau=self.fedopt_tau,
            trimmed_beta=self.trimmed_beta,
            num_malicious_nodes=self.num_malicious_nodes,
            num_nodes_to_select=self.num_nodes_to_select,
            qffl_q=self.qffl_q,
        )

    def dp_params(self) -> DpParams:
        """Differential-privacy settings (``dp-*`` keys)."""
        return DpParams(
            mode=self.dp_mode,
            noise_multiplier=self.dp_noise_multiplier,
            clipping_norm=self.dp_clipping_norm,
            target_clipped_quantile=self.dp_target_clipped_quantile,
            clip_norm_lr=self.dp_clip_norm_lr,
            epsilon=self.dp_epsilon,
            delta=self.dp_delta,
            sensitivity=self.dp_sensitivity,
        )

    def dp_sampled_clients(self, num_connected_nodes: int) -> int:
        """``dp-num-sampled-clients``, or (if 0) the count Flower's sampling yields."""
        if self.dp_num_sampled_clients:
            return self.dp_num_sampled_clients
        return max(int(num_connected_nodes * self.fraction_train), 1)

    def split_params(self) -> SplitParams:
        """Settings of a split-learning strategy (``strategy`` in SPLIT_NAMES)."""
        return SplitParams(
            mode=self.strategy,
            num_rounds=self.num_server_rounds,
            fraction_train=self.fraction_train,
            min_available_nodes=self.min_available_nodes,
            round_timeout=self.round_timeout,
            seed=self.seed,
            encryption=self.channel_encryption,
            codec=self.channel_codec,
            error_feedback=self.channel_error_feedback,
            sync_interval=self.split_sync_interval,
        )

    def partition_spec(self, num_partitions: int) -> PartitionSpec:
        """How the training set is split across ``num_partitions`` clients."""
        return PartitionSpec(
            method=self.partitioning,
            num_partitions=num_partitions,
            seed=self.seed,
            alpha=self.dirichlet_alpha,
            shards_per_partition=self.shards_per_partition,
        )

    # ------------------------------------------------------------------------------
    def _validate(self) -> None:
        _choice("strategy", self.strategy, STRATEGY_NAMES)
        _choice("task", self.task, tuple(TASKS))
        datasets = TASKS[self.task].datasets
        _choice("dataset", self.dataset, (AUTO_DATASET, *datasets))
        _choice("partitioning", self.partitioning, PARTITIONINGS)
        if self.partitioning == "by-camera" and not TASKS[self.task].has_cameras:
            with_cameras = [name for name, task in TASKS.items() if task.has_cameras]
            raise ConfigError(
                f"run-config key 'partitioning' has value 'by-camera' but task "
                f"{self.task!r} has no cameras; expected a task among {with_cameras}"
            )
        _choice("dp-mode", self.dp_mode, DP_MODES)
        _choice("channel-codec", self.channel_codec, CODECS)
        if self.strategy in SPLIT_NAMES:
            self._validate_split()
        _choice("stip-sampling", self.stip_sampling, STIP_SAMPLING)
        if self.strategy == SECURE_INFERENCE and not self.stip_server_bundle.strip():
            raise ConfigError(
                "run-config key 'stip-server-bundle' has value ''; expected the "
                "server/ directory written by 'python -m edgecloud.stip.developer' "
                "when strategy is 'secure-inference'"
            )
        if self.update_quantization_bits not in QUANTIZATION_BITS:
            raise ConfigError(
                f"run-config key 'update-quantization-bits' has value "
                f"{self.update_quantization_bits!r}; expected one of "
                f"{', '.join(map(str, QUANTIZATION_BITS))} (0 = off)"
            )
        if not self.output_dir.strip():
            raise ConfigError(
                f"run-config key 'output-dir' has value {self.output_dir!r}; expected "
                "a directory path"
            )
        for name, bounds in _NUMERIC_BOUNDS.items():
            value = getattr(self, name)
            if not bounds.contains(float(value)):
                raise ConfigError(
                    f"run-config key '{_key(name)}' has value {value!r}; expected "
                    f"{bounds.describe()}"
                )
        if self.fraction_train == 0.0:
            raise ConfigError(
                "run-config key 'fraction-train' has value 0.0; expected a number in "
                "(0, 1]: with no client sampled for training nothing is learned"
            )
        if self.strategy == "multikrum" and self.num_nodes_to_select < 1:
            raise ConfigError(
                f"run-config key 'num-nodes-to-select' has value "
                f"{self.num_nodes_to_select!r}; expected an integer >= 1 for multikrum"
            )
        if self.dp_mode != "none" and self.update_quantization_bits:
            # Quantizing after clipping changes the update's norm, so the clipping
            # bound (and with it the DP guarantee) would no longer hold.
            raise ConfigError(
                f"run-config keys 'dp-mode'={self.dp_mode!r} and "
                f"'update-quantization-bits'={self.update_quantization_bits} cannot be "
                "combined; expected update-quantization-bits=0 when DP is on"
            )

    def _validate_split(self) -> None:
        # A declared flag: the client parses the config on every message, and
        # building a model (ResNet-18: 11 M parameters) there would be wasted work.
        if not TASKS[self.task].splittable:
            raise ConfigError(
                f"run-config key 'strategy' has value {self.strategy!r} but task "
                f"{self.task!r} declares no cut point; expected a task whose model is "
                "a SplitModel"
            )
        if self.dp_mode != "none" or self.update_quantization_bits:
            raise ConfigError(
                f"run-config key 'strategy' has value {self.strategy!r}: split "
                "learning does not combine with DP or update quantization; expected "
                'dp-mode="none" and update-quantization-bits=0'
            )


def _key(field_name: str) -> str:
    return field_name.replace("_", "-")


def _check_type(key: str, value: object, annotation: object) -> Scalar:
    """Return ``value`` if it matches the field's type (ints accepted for floats)."""
    type_name = annotation if isinstance(annotation, str) else annotation.__name__  # type: ignore[attr-defined]
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[type_name]
    if not ok:
        raise ConfigError(
            f"run-config key '{key}' has value {value!r} of type "
            f"{type(value).__name__}; expected a {type_name}"
            + (' (TOML strings need quotes: key="value")' if type_name == "str" else "")
        )
    if type_name == "float":
        return float(value)  # type: ignore[arg-type]
    return value  # type: ignore[return-value]


def _optional_str(
    node_config: Mapping[str, Scalar], key: str, expected: str = "a quoted string"
) -> str | None:
    value = node_config.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(
            f"node config key '{key}' has value {value!r}; expected {expected}"
        )
    return value


def _parse_cameras(value: Scalar | None) -> tuple[int, ...] | None:
    """Node config ``cameras``: an int or a string of comma-separated ints."""
    if value is None:
        return None
    problem = (
        f"node config key '{NODE_CAMERAS}' has value {value!r}; expected camera ids "
        "as an int or a quoted comma-separated list such as '0,3'"
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


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"run-config key '{key}' has value {value!r}; expected one of: "
            f"{', '.join(allowed)}"
        )


_NUMERIC_BOUNDS: dict[str, _Bounds] = {
    "dirichlet_alpha": _POSITIVE,
    "shards_per_partition": _AT_LEAST_ONE,
    "num_server_rounds": _AT_LEAST_ONE,
    "fraction_train": _FRACTION,
    "fraction_evaluate": _FRACTION,
    "min_available_nodes": _AT_LEAST_ONE,
    "round_timeout": _POSITIVE,
    "local_epochs": _AT_LEAST_ONE,
    "batch_size": _AT_LEAST_ONE,
    "lr": _POSITIVE,
    "momentum": _Bounds(low=0.0, high=1.0, high_open=True),
    "seed": _NON_NEGATIVE,
    "proximal_mu": _NON_NEGATIVE,
    "server_lr": _POSITIVE,
    "server_momentum": _Bounds(low=0.0, high=1.0, high_open=True),
    "fedopt_eta": _POSITIVE,
    "fedopt_beta_1": _Bounds(low=0.0, high=1.0, high_open=True),
    "fedopt_beta_2": _Bounds(low=0.0, high=1.0, high_open=True),
    "fedopt_tau": _POSITIVE,
    "trimmed_beta": _Bounds(low=0.0, high=0.5, high_open=True),
    "num_malicious_nodes": _NON_NEGATIVE,
    "num_nodes_to_select": _NON_NEGATIVE,
    "qffl_q": _NON_NEGATIVE,
    "dp_noise_multiplier": _NON_NEGATIVE,
    "dp_clipping_norm": _POSITIVE,
    "dp_num_sampled_clients": _NON_NEGATIVE,
    "dp_target_clipped_quantile": _FRACTION,
    "dp_clip_norm_lr": _POSITIVE,
    "dp_epsilon": _POSITIVE,
    "dp_delta": _OPEN_UNIT,
    "dp_sensitivity": _POSITIVE,
    "split_sync_interval": _AT_LEAST_ONE,
    "split_lr": _POSITIVE,
    "stip_max_new_tokens": _AT_LEAST_ONE,
    "stip_temperature": _POSITIVE,
    "stip_top_k": _NON_NEGATIVE,
}


@dataclass(frozen=True)
class NodeConfig:
    """Per-SuperNode facts from ``context.node_config`` (``--node-config``).

    Simulation injects ``partition-id`` and ``num-partitions``; a real SuperNode
    must be started with them, e.g.
    ``--node-config "partition-id=0 num-partitions=2 data-dir='/data'"``.
    ``data-dir`` (optional) overrides the run config's ``data-dir`` on that node;
    ``cameras`` (optional, testbed tasks) gives the node its own camera ids, e.g.
    ``--node-config "partition-id=0 num-partitions=2 cameras='0,3'"``.
    """

    partition_id: int
    num_partitions: int
    data_dir: str | None = None
    cameras: tuple[int, ...] | None = None
    stip_user_bundle: str | None = None
    stip_prompt: str | None = None

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Scalar]) -> NodeConfig:
        """Validate the node config.

        Raises
        ------
        ConfigError
            If ``partition-id`` / ``num-partitions`` are missing or inconsistent.
        """
        values: dict[str, int] = {}
        for key in (NODE_PARTITION_ID, NODE_NUM_PARTITIONS):
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
        pid, num = values[NODE_PARTITION_ID], values[NODE_NUM_PARTITIONS]
        if num < 1 or not 0 <= pid < num:
            raise ConfigError(
                f"node config has partition-id={pid}, num-partitions={num}; expected "
                "num-partitions >= 1 and 0 <= partition-id < num-partitions"
            )
        return cls(
            partition_id=pid,
            num_partitions=num,
            data_dir=_optional_str(node_config, NODE_DATA_DIR, "a quoted path string"),
            cameras=_parse_cameras(node_config.get(NODE_CAMERAS)),
            stip_user_bundle=_optional_str(node_config, NODE_STIP_USER_BUNDLE),
            stip_prompt=_optional_str(node_config, NODE_STIP_PROMPT),
        )

    def data_path(self, run_config: RunConfig) -> Path:
        """The node's ``data-dir`` if set, else the run config's (``~`` expanded)."""
        if self.data_dir is None:
            return run_config.data_path
        return Path(self.data_dir).expanduser()
