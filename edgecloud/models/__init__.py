"""Black-box and reusable models (no flwr import).

The testbed's black boxes: :class:`FrameCnn` architectures (:data:`SPECS`), the
uniform :class:`BlackBoxModel` interface with its :class:`ModelCost`, saving and
loading, and their training and scoring (:func:`train_all`, :func:`domain_shift`).
Train them with ``python -m edgecloud.data.testbed train-models``.
"""

from edgecloud.models.blackbox import (
    BlackBoxModel,
    ModelCost,
    load_blackboxes,
    measure_cost,
    to_model_input,
)
from edgecloud.models.blackbox_training import (
    SPLITS,
    BlackBoxTraining,
    domain_shift,
    score,
    score_by_domain,
    train_all,
    train_blackbox,
)
from edgecloud.models.frame_cnn import SPECS, FrameCnn, ModelSpec, get_spec, input_shape

__all__ = [
    "SPECS",
    "SPLITS",
    "BlackBoxModel",
    "BlackBoxTraining",
    "FrameCnn",
    "ModelCost",
    "ModelSpec",
    "domain_shift",
    "get_spec",
    "input_shape",
    "load_blackboxes",
    "measure_cost",
    "score",
    "score_by_domain",
    "to_model_input",
    "train_all",
    "train_blackbox",
]
