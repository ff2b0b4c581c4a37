"""A camera node's InFi data: its skip dataset, split in time, and its test report.

No flwr import: the client handlers call these with values from the settings.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from edgecloud.infi import (
    InputFilter,
    choose_skip_threshold,
    optimal_filter_rate,
    zero_count,
)
from edgecloud.infi.datasets import FilterDataset, FrameModel, image_dataset
from edgecloud.infi.thresholds import skip_operating_point

if TYPE_CHECKING:
    from edgecloud.data.testbed import Testbed


@dataclass(frozen=True)
class NodeParts:
    """One node's samples in time order per camera: fit, then validation, then test.

    ``train`` is what the filter is fitted on, ``validation`` (the tail of the
    training period) picks the skip threshold, ``test`` (the later frames) is
    what the node reports on: the filter never sees the future it is scored on.
    """

    train: FilterDataset
    validation: FilterDataset
    test: FilterDataset


@dataclass(frozen=True)
class FilterReport:
    """A filter's operating point on a node's test part (thesis §3.5.2).

    ``threshold`` is ``inf`` when no threshold reached the target on validation
    data: the node then runs the black box on every input (filter rate 0).
    """

    threshold: float
    filter_rate: float
    accuracy: float
    redundant_share: float
    optimum_filter_rate: float
    validation_filter_rate: float
    validation_accuracy: float
    num_test: int


def node_dataset(
    testbed: Testbed,
    model: FrameModel,
    cameras: Sequence[int],
    every: int,
    size: tuple[int, int],
) -> FilterDataset:
    """The cameras' every ``every``-th frame, labelled by ``model``, at filter ``size``.

    The black box sees the frames at its own input size (labels as in
    deployment); only the filter's copy is area-resized to ``size = (w, h)``,
    one camera at a time so that full-size float frames of all cameras never sit
    in memory together. Redundant: output 0 (``zero_count``).
    """
    parts = [
        resize_inputs(
            image_dataset(testbed, model, [camera], every=every, measure=zero_count()),
            size,
        )
        for camera in cameras
    ]
    return _concat(parts)


def resize_inputs(dataset: FilterDataset, size: tuple[int, int]) -> FilterDataset:
    """``dataset`` with its ``(N, 3, H, W)`` inputs area-resized to ``(w, h)``."""
    width, height = size
    if dataset.inputs.shape[2:] == (height, width):
        return dataset
    with torch.no_grad():
        small = F.interpolate(
            torch.from_numpy(dataset.inputs), size=(height, width), mode="area"
        )
    return dataclasses.replace(dataset, inputs=small.numpy())


def split_in_time(
    dataset: FilterDataset, train_fraction: float, validation_fraction: float
) -> NodeParts:
    """Per camera: the first ``train_fraction`` of its frames train, the rest test.

    The last ``validation_fraction`` of each camera's training frames is held
    back for the threshold. Fractions are in ``(0, 1)``.

    Raises
    ------
    ValueError
        If a part gets no sample (too few frames for the fractions).
    """
    fit: list[int] = []
    validation: list[int] = []
    test: list[int] = []
    for camera in np.unique(dataset.camera):
        rows = np.flatnonzero(dataset.camera == camera)
        rows = rows[np.argsort(dataset.frame_index[rows], kind="stable")]
        head = math.floor(len(rows) * train_fraction)
        held = math.ceil(head * validation_fraction)
        fit.extend(rows[: head - held].tolist())
        validation.extend(rows[head - held : head].tolist())
        test.extend(rows[head:].tolist())
    sizes = {"fit": len(fit), "validation": len(validation), "test": len(test)}
    if min(sizes.values()) == 0:
        raise ValueError(
            f"{len(dataset)} frames split into {sizes} with train_fraction="
            f"{train_fraction} and validation_fraction={validation_fraction}; "
            "expected at least one frame in each part (use more frames: a "
            "smaller frame stride)"
        )
    return NodeParts(
        train=dataset.select(fit),
        validation=dataset.select(validation),
        test=dataset.select(test),
    )


def evaluate_filter(
    model: InputFilter, parts: NodeParts, target_accuracy: float
) -> FilterReport:
    """Threshold for ``target_accuracy`` on validation data, then the test figures.

    A skipped input is correct iff it is truly redundant, a run one always
    (:func:`~edgecloud.infi.thresholds.skip_operating_point`); skipping nothing
    always qualifies, so a filter that cannot reach the target reports filter
    rate 0 instead of failing.
    """
    validation = model.predict_skip(parts.validation.inputs)[:, 0]
    chosen = choose_skip_threshold(
        validation, parts.validation.redundant, target_accuracy
    )
    scores = model.predict_skip(parts.test.inputs)[:, 0]
    point = skip_operating_point(scores, parts.test.redundant, chosen.threshold)
    r_n = float(parts.test.redundant.mean())
    return FilterReport(
        threshold=chosen.threshold,
        filter_rate=point.filter_rate,
        accuracy=point.accuracy,
        redundant_share=r_n,
        optimum_filter_rate=optimal_filter_rate(target_accuracy, r_n),
        validation_filter_rate=chosen.filter_rate,
        validation_accuracy=chosen.accuracy,
        num_test=len(parts.test),
    )


def _concat(parts: Sequence[FilterDataset]) -> FilterDataset:
    """The samples of ``parts`` one after another (same modality)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    return FilterDataset(
        modality=first.modality,
        inputs=np.concatenate([p.inputs for p in parts]),
        outputs=np.concatenate([p.outputs for p in parts]),
        redundant=np.concatenate([p.redundant for p in parts]),
        camera=np.concatenate([p.camera for p in parts]),
        frame_index=np.concatenate([p.frame_index for p in parts]),
        night=np.concatenate([p.night for p in parts]),
    )
