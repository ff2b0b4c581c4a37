"""H-KNN cache: homogeneity hits, distance bound, LFU eviction, bad input refused."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from edgecloud.infi.cache import CacheStats, HKNNCache, reuse_stream


def _cache(**kwargs: object) -> HKNNCache:
    settings: dict[str, object] = {"capacity": 8, "dim": 2, "k": 3}
    settings.update(kwargs)
    return HKNNCache(**settings)  # type: ignore[arg-type]


def _snapshot(cache: HKNNCache) -> tuple[object, ...]:
    return (
        len(cache),
        cache.keys.tolist(),
        cache.values.tolist(),
        cache.uses.tolist(),
        cache.stats,
    )


def _cluster(values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Three keys around the origin with ``values``, three far ones with 9."""
    keys = np.array(
        [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [10.0, 10.0], [10.1, 10.0], [10.0, 10.1]]
    )
    return keys, np.array([*values, 9, 9, 9])


@pytest.mark.parametrize(
    ("values", "theta_threshold", "hit", "theta"),
    [
        ([1, 1, 1], 0.5, True, 1.0),  # unanimous neighbours
        ([1, 1, 2], 0.5, True, 2 / 3),  # 2 of 3 agree: enough for θ_T = 0.5
        ([1, 1, 2], 0.7, False, 2 / 3),  # ... but not for θ_T = 0.7
        ([1, 2, 3], 0.5, False, 1 / 3),  # no majority worth reusing
    ],
)
def test_hit_only_when_the_neighbours_agree_enough(
    values: list[int], theta_threshold: float, hit: bool, theta: float
) -> None:
    # Prepare
    cache = _cache(theta_threshold=theta_threshold)
    cache.insert(*_cluster(values))

    # Execute
    answer = cache.lookup(np.array([[0.03, 0.03]]))

    # Assert
    assert answer.hit.tolist() == [hit]
    assert answer.value.tolist() == [1]
    assert answer.theta[0] == pytest.approx(theta)
    assert answer.distance[0] == pytest.approx(math.hypot(0.03, 0.03), rel=1e-6)


def test_distance_weighting_trusts_the_nearest_neighbour() -> None:
    # Prepare: value 5 at distance 1, value 7 twice at distance 4 (1-d keys)
    keys = np.array([[1.0], [-4.0], [4.0]])
    values = np.array([5, 7, 7])
    uniform = HKNNCache(capacity=3, dim=1, k=3)
    weighted = HKNNCache(capacity=3, dim=1, k=3, weighting="distance")
    uniform.insert(keys, values)
    weighted.insert(keys, values)
    query = np.array([[0.0]])

    # Execute
    by_count = uniform.lookup(query)
    by_distance = weighted.lookup(query)

    # Assert: 2 votes of 3 vs weight 1 of 1 + 1/4 + 1/4
    assert (by_count.value[0], by_count.theta[0]) == (7, pytest.approx(2 / 3))
    assert (by_distance.value[0], by_distance.theta[0]) == (5, pytest.approx(2 / 3))


def test_distance_weighting_lets_exact_matches_decide() -> None:
    # Prepare: the query equals a cached key; two other neighbours disagree
    cache = HKNNCache(capacity=3, dim=1, k=3, weighting="distance")
    cache.insert(np.array([[0.5], [0.6], [0.7]]), np.array([3, 9, 9]))

    # Execute
    answer = cache.lookup(np.array([[0.5]]))

    # Assert: a float32-rounded key is at distance exactly 0 from the same query
    assert answer.distance[0] == 0.0
    assert (answer.hit[0], answer.value[0], answer.theta[0]) == (True, 3, 1.0)


def test_a_tie_goes_to_the_nearest_neighbours_result() -> None:
    # Prepare: k = 2, one vote each; 4 is nearer than 8
    cache = HKNNCache(capacity=2, dim=1, k=2, theta_threshold=0.5)
    cache.insert(np.array([[2.0], [1.0]]), np.array([8, 4]))

    # Execute
    answer = cache.lookup(np.array([[0.0]]))

    # Assert
    assert (answer.hit[0], answer.value[0], answer.theta[0]) == (True, 4, 0.5)


def test_miss_beyond_max_distance() -> None:
    # Prepare: unanimous neighbours, but the query is far from all of them
    cache = _cache(max_distance=1.0)
    cache.insert(*_cluster([1, 1, 1]))

    # Execute
    far = cache.lookup(np.array([[-3.0, -4.0]]))
    near = cache.lookup(np.array([[0.6, 0.8]]))

    # Assert: the nearest key is (0, 0) at distance 5, then at distance <= 1
    assert far.hit.tolist() == [False]
    assert far.theta[0] == pytest.approx(1.0)
    assert far.distance[0] == pytest.approx(5.0)
    assert near.hit.tolist() == [True]


def test_empty_or_underfilled_cache_misses() -> None:
    # Prepare
    cache = _cache(k=3)
    query = np.array([[0.0, 0.0]])

    # Execute
    empty = cache.lookup(query)
    cache.insert(np.array([[0.0, 0.0], [0.1, 0.1]]), np.array([1, 1]))
    underfilled = cache.lookup(query)

    # Assert: no answer from fewer than K neighbours, however close they are
    assert empty.hit.tolist() == [False]
    assert empty.distance.tolist() == [math.inf]
    assert empty.theta.tolist() == [0.0]
    assert underfilled.hit.tolist() == [False]
    assert underfilled.distance[0] == 0.0
    assert cache.stats == CacheStats(lookups=2, misses=2, insertions=2)


def test_lfu_evicts_the_least_used_entry() -> None:
    # Prepare: k = 1; entry A used twice, C once, B never
    cache = HKNNCache(capacity=3, dim=1, k=1)
    cache.insert(np.array([[0.0], [10.0], [20.0]]), np.array([0, 1, 2]))
    cache.lookup(np.array([[0.1], [-0.1], [20.1]]))

    # Execute
    evicted = cache.insert(np.array([[30.0]]), np.array([3]))

    # Assert: B's slot now holds the new entry, with 0 uses
    assert evicted == 1
    assert cache.values.tolist() == [0, 3, 2]
    assert cache.uses.tolist() == [2, 0, 1]
    assert cache.stats.evictions == 1


def test_lfu_evicts_the_oldest_among_the_least_used() -> None:
    # Prepare: three entries never used
    cache = HKNNCache(capacity=3, dim=1, k=1)
    cache.insert(np.array([[0.0], [10.0], [20.0]]), np.array([0, 1, 2]))

    # Execute: each new entry replaces the oldest unused one, itself last
    cache.insert(np.array([[30.0]]), np.array([3]))
    after_first = cache.values.tolist()
    cache.insert(np.array([[40.0]]), np.array([4]))
    after_second = cache.values.tolist()

    # Assert
    assert after_first == [3, 1, 2]
    assert after_second == [3, 4, 2]


def test_a_used_entry_outlives_newer_unused_ones() -> None:
    # Prepare: the oldest entry was used once
    cache = HKNNCache(capacity=2, dim=1, k=1)
    cache.insert(np.array([[0.0], [10.0]]), np.array([0, 1]))
    cache.lookup(np.array([[0.0]]))

    # Execute: two insertions into a full cache
    cache.insert(np.array([[20.0], [30.0]]), np.array([2, 3]))

    # Assert: the second insertion evicts the first new (unused) entry
    assert cache.values.tolist() == [0, 3]
    assert cache.stats.evictions == 2


@pytest.mark.parametrize("weighting", ["uniform", "distance"])
def test_batch_lookup_equals_one_by_one(weighting: str) -> None:
    # Prepare: two identical caches of 50 random entries with 3 random results
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, size=50)
    keys = rng.normal(size=(50, 8))
    queries = rng.normal(size=(20, 8))
    batch = HKNNCache(capacity=50, dim=8, k=5, weighting=weighting)  # type: ignore[arg-type]
    single = HKNNCache(capacity=50, dim=8, k=5, weighting=weighting)  # type: ignore[arg-type]
    batch.insert(keys, labels)
    single.insert(keys, labels)

    # Execute
    together = batch.lookup(queries)
    apart = [single.lookup(q[None, :]) for q in queries]

    # Assert
    assert together.hit.tolist() == [a.hit[0] for a in apart]
    assert together.value.tolist() == [a.value[0] for a in apart]
    assert together.theta.tolist() == [a.theta[0] for a in apart]
    assert together.distance.tolist() == [a.distance[0] for a in apart]
    assert batch.uses.tolist() == single.uses.tolist()
    assert batch.stats == single.stats
    assert 0 < batch.stats.hits < 20  # both outcomes exercised


def test_inspection_records_nothing() -> None:
    # Prepare
    cache = _cache()
    cache.insert(*_cluster([1, 1, 1]))
    before = _snapshot(cache)

    # Execute
    answer = cache.lookup(np.array([[0.0, 0.0]]), count_uses=False)

    # Assert
    assert answer.hit.tolist() == [True]
    assert _snapshot(cache) == before


def test_stats_clear_and_reset() -> None:
    # Prepare
    cache = _cache(capacity=6)
    cache.insert(*_cluster([1, 1, 1]))
    cache.lookup(np.array([[0.0, 0.0], [10.0, 10.0], [0.05, 0.05]]))

    # Execute
    stats = cache.stats
    cache.clear()
    cleared = (len(cache), cache.lookup(np.array([[0.0, 0.0]])).hit.tolist())
    kept = cache.stats
    cache.reset_stats()

    # Assert
    assert stats == CacheStats(lookups=3, hits=3, misses=0, insertions=6)
    assert stats.hit_rate == 1.0
    assert cleared == (0, [False])
    assert kept == CacheStats(lookups=4, hits=3, misses=1, insertions=6)
    assert cache.stats == CacheStats()


def test_float_results_are_cached_as_float64() -> None:
    # Prepare
    cache = HKNNCache(capacity=3, dim=1, k=2, result_type="float")
    cache.insert(np.array([[0.0], [0.2], [5.0]]), np.array([1.5, 1.5, 2.5]))

    # Execute
    answer = cache.lookup(np.array([[0.1]]))

    # Assert
    assert answer.value.dtype == np.float64
    assert (answer.hit[0], answer.value[0]) == (True, 1.5)


def test_reuse_stream_follows_algorithm_3_1() -> None:
    # Prepare: capacity 2 fills on the first two inputs, then lookups
    cache = HKNNCache(capacity=2, dim=1, k=1, max_distance=0.5)
    embeddings = np.array([[0.0], [10.0], [0.1], [10.2], [5.0]])
    results = np.array([1, 2, 1, 3, 4])

    # Execute
    served, reused = reuse_stream(cache, embeddings, results)

    # Assert: input 3 reuses a wrong result (2 for 3); input 4 is too far, is
    # inferred and replaces the oldest of the two entries used once
    assert served.tolist() == [1, 2, 1, 2, 4]
    assert reused.tolist() == [False, False, True, True, False]
    assert cache.values.tolist() == [4, 2]
    assert cache.stats == CacheStats(
        lookups=3, hits=2, misses=1, insertions=3, evictions=1
    )


def test_zero_theta_threshold_warns(caplog: pytest.LogCaptureFixture) -> None:
    # Execute
    with caplog.at_level(logging.WARNING, logger="edgecloud.infi.cache"):
        _cache(theta_threshold=0.0)

    # Assert
    assert "theta_threshold is 0" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        # a cache needs room for one entry
        ({"capacity": 0}, r"capacity is 0; expected a positive integer"),
        # a float is not a size
        ({"capacity": 2.5}, r"capacity is 2.5; expected a positive integer"),
        # embeddings have at least one dimension
        ({"dim": 0}, r"dim is 0; expected a positive integer"),
        # at least one neighbour votes
        ({"k": 0}, r"k is 0; expected a positive integer"),
        # a cache of 8 never holds 9 neighbours: it would never hit
        ({"k": 9}, r"k is 9; expected at most capacity \(8\)"),
        # θ is a share
        ({"theta_threshold": 1.5}, r"theta_threshold is 1.5; expected a value in"),
        # negative θ_T
        ({"theta_threshold": -0.1}, r"theta_threshold is -0.1; expected a value"),
        # NaN θ_T
        ({"theta_threshold": math.nan}, r"theta_threshold is nan; expected a number"),
        # distances are >= 0
        ({"max_distance": -1.0}, r"max_distance is -1.0; expected a distance >= 0"),
        # unknown weighting
        ({"weighting": "cosine"}, r"weighting is 'cosine'; expected one of"),
        # unknown result type
        ({"result_type": "str"}, r"result_type is 'str'; expected one of"),
    ],
)
def test_constructor_rejects_bad_arguments(
    kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        _cache(**kwargs)


@pytest.mark.parametrize(
    ("queries", "match"),
    [
        # 3-d query for a 2-d cache
        (np.zeros((1, 3)), r"queries has shape \(1, 3\); expected \(B, 2\)"),
        # a single embedding without its batch axis
        (np.zeros(2), r"queries has shape \(2,\); expected \(B, 2\)"),
        # integers are not embeddings (an index array passed by mistake)
        (np.zeros((1, 2), dtype=np.int64), r"queries has dtype int64; expected float"),
        # NaN embedding
        (np.array([[0.0, np.nan]]), r"queries\[0, 1\] is nan; expected a finite"),
        # infinite embedding
        (np.array([[np.inf, 0.0]]), r"queries\[0, 0\] is inf; expected a finite"),
        # finite in float64, infinite once stored as float32
        (np.array([[0.0, 1e39]]), r"queries\[0, 1\] is 1e\+39; expected a finite"),
    ],
)
def test_lookup_rejects_bad_queries_and_records_nothing(
    queries: np.ndarray, match: str
) -> None:
    # Prepare
    cache = _cache()
    cache.insert(*_cluster([1, 1, 1]))
    before = _snapshot(cache)

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        cache.lookup(queries)
    assert _snapshot(cache) == before


@pytest.mark.parametrize(
    ("keys", "values", "result_type", "match"),
    [
        # key of the wrong dimension
        (np.zeros((1, 3)), [1], "int", r"keys has shape \(1, 3\); expected \(B, 2\)"),
        # NaN in the second key: the first must not be inserted either
        (
            np.array([[0.0, 0.0], [np.nan, 0.0]]),
            [1, 2],
            "int",
            r"keys\[1, 0\] is nan; expected a finite float32",
        ),
        # integer keys
        (np.zeros((1, 2), dtype=np.int32), [1], "int", r"keys has dtype int32"),
        # one value short
        (np.zeros((2, 2)), [1], "int", r"values has shape \(1,\); expected \(2,\)"),
        # a float result in a cache of classes
        (
            np.zeros((1, 2)),
            [1.5],
            "int",
            r"values has dtype float64; expected integers",
        ),
        # booleans are not classes
        (np.zeros((1, 2)), [True], "int", r"values has dtype bool; expected"),
        # NaN result
        (
            np.zeros((1, 2)),
            [np.nan],
            "float",
            r"values\[0\] is nan; expected a finite result",
        ),
    ],
)
def test_insert_rejects_bad_pairs_and_changes_nothing(
    keys: np.ndarray, values: list[object], result_type: str, match: str
) -> None:
    # Prepare: a full cache, so an accepted pair would also evict
    cache = _cache(capacity=6, result_type=result_type)
    cache.insert(*_cluster([1, 1, 1]))
    before = _snapshot(cache)

    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        cache.insert(keys, np.array(values))
    assert _snapshot(cache) == before


def test_reuse_stream_rejects_mismatched_results() -> None:
    # Prepare
    cache = _cache()
    before = _snapshot(cache)

    # Execute / Assert: one result per embedding
    with pytest.raises(ValueError, match=r"results has shape \(1,\); expected \(2,\)"):
        reuse_stream(cache, np.zeros((2, 2)), np.array([1]))
    assert _snapshot(cache) == before
