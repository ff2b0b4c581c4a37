"""flwr-datasets partitioning: deterministic, complete, and skewed when asked."""

from __future__ import annotations

import numpy as np
import pytest

from edgecloud.data.digits import load_digits
from edgecloud.data.partitioning import (
    PartitionSpec,
    label_histogram,
    partition_by_group,
    partition_indices,
)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return load_digits(train=True).labels


def _skew(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance of each partition's label mix to the global."""
    overall = np.bincount(labels, minlength=10) / len(labels)
    dists = []
    for rows in parts:
        local = np.bincount(labels[rows], minlength=10) / max(len(rows), 1)
        dists.append(0.5 * np.abs(local - overall).sum())
    return float(np.mean(dists))


@pytest.mark.parametrize("method", ["iid", "dirichlet", "shards"])
def test_partitions_cover_every_row_once_and_are_deterministic(
    labels: np.ndarray, method: str
) -> None:
    # Prepare
    spec = PartitionSpec(method, num_partitions=10, seed=7, alpha=0.5)

    # Execute
    first = partition_indices(labels, spec)
    again = partition_indices(labels, spec)

    # Assert
    assert len(first) == 10
    all_rows = np.sort(np.concatenate(first))
    if method == "shards":  # ShardPartitioner drops the incomplete last shard
        assert len(np.unique(all_rows)) == len(all_rows) >= len(labels) - 20
    else:
        np.testing.assert_array_equal(all_rows, np.arange(len(labels)))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(len(p) > 0 for p in first)


def test_different_seeds_give_different_partitions(labels: np.ndarray) -> None:
    # Execute
    a = partition_indices(labels, PartitionSpec("dirichlet", 10, seed=1))
    b = partition_indices(labels, PartitionSpec("dirichlet", 10, seed=2))

    # Assert
    assert any(
        len(x) != len(y) or not np.array_equal(x, y) for x, y in zip(a, b, strict=True)
    )


def test_dirichlet_alpha_0_1_visibly_skews_label_histograms(labels: np.ndarray) -> None:
    # Execute
    iid = partition_indices(labels, PartitionSpec("iid", 10, seed=42))
    skewed = partition_indices(
        labels, PartitionSpec("dirichlet", 10, seed=42, alpha=0.1)
    )
    hists = [label_histogram(labels[p], 10) for p in skewed]

    # Assert: IID partitions mirror the global mix; alpha=0.1 ones do not
    assert _skew(labels, iid) < 0.1
    assert _skew(labels, skewed) > 0.5
    # most clients miss several classes entirely, IID clients miss none
    assert np.median([sum(1 for c in h if c == 0) for h in hists]) >= 3
    assert all(min(label_histogram(labels[p], 10)) > 0 for p in iid)


def test_shards_give_each_client_few_classes(labels: np.ndarray) -> None:
    # Execute
    parts = partition_indices(
        labels, PartitionSpec("shards", 10, seed=0, shards_per_partition=2)
    )

    # Assert: two label-sorted shards touch at most ~4 classes each
    assert max(sum(1 for c in label_histogram(labels[p], 10) if c) for p in parts) <= 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # unknown method
        ({"method": "natural", "num_partitions": 2, "seed": 0}, "expected one of"),
        # zero clients
        ({"method": "iid", "num_partitions": 0, "seed": 0}, "expected an integer >= 1"),
    ],
)
def test_invalid_specs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PartitionSpec(**kwargs)  # type: ignore[arg-type]


def test_more_partitions_than_rows_is_rejected() -> None:
    with pytest.raises(ValueError, match="num-partitions <= number of examples"):
        partition_indices(np.zeros(3, dtype=np.int64), PartitionSpec("iid", 4, 0))


def test_by_camera_deals_whole_cameras_round_robin() -> None:
    # Prepare: 6 cameras, 4 clients (a fixed group size could not do this)
    cameras = np.repeat(np.arange(6), 5)

    # Execute
    parts = partition_by_group(cameras, PartitionSpec("by-camera", 4, 0))

    # Assert: every row once, whole cameras, sizes 2, 2, 1, 1 cameras
    assert sorted(np.concatenate(parts).tolist()) == list(range(30))
    assert [sorted(set(cameras[p].tolist())) for p in parts] == [
        [0, 4],
        [1, 5],
        [2],
        [3],
    ]


def test_by_camera_refuses_more_clients_than_cameras_and_label_partitioning() -> None:
    with pytest.raises(ValueError, match="expected num-partitions <= 2"):
        partition_by_group(np.array([0, 1, 1]), PartitionSpec("by-camera", 3, 0))
    with pytest.raises(ValueError, match="needs a camera id per example"):
        partition_indices(np.zeros(4, dtype=np.int64), PartitionSpec("by-camera", 2, 0))


def test_label_histogram_counts_every_class() -> None:
    assert label_histogram(np.array([0, 2, 2, 9]), 10) == [1, 0, 2] + [0] * 6 + [1]
