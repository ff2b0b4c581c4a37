"""Serving behind InFi filters: skip, reuse, and the fall back to the model."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import torch

from edgecloud.infi.cache import HKNNCache
from edgecloud.infi.features import feature_network
from edgecloud.infi.serving import FilteredModel
from edgecloud.infi.siamese import InputFilter

DIM = 4


def _filter(bias: float = 0.0) -> InputFilter:
    """A vector filter whose skip probability is sigmoid(bias) plus a small term."""
    net = InputFilter(
        feature_network("vector", (DIM,), embedding_dim=8, seed=0), seed=0
    )
    with torch.no_grad():
        net.classifier.weight.zero_()
        net.classifier.bias.fill_(bias)
    return net


class _Model:
    """Records which rows it ran on; result = 10 + row index in the batch."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        self.calls.append(rows.tolist())
        return 10 + rows


def _inputs(n: int = 6) -> npt.NDArray[np.float32]:
    return np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)


def test_skip_threshold_decides_which_inputs_run() -> None:
    # Prepare: every skip probability is sigmoid(3) ~ 0.95
    served_all = FilteredModel(_filter(3.0), none_result=0, skip_threshold=0.9)
    served_none = FilteredModel(_filter(3.0), none_result=0, skip_threshold=0.99)
    model_a, model_b = _Model(), _Model()

    # Execute
    a = served_all(_inputs(), model_a)
    b = served_none(_inputs(), model_b)

    # Assert
    assert a.skipped.all() and a.results.tolist() == [0] * 6 and model_a.calls == []
    assert not b.skipped.any() and b.results.tolist() == list(range(10, 16))
    assert model_b.calls == [list(range(6))]
    assert a.fallback == b.fallback == ""


def test_reuse_serves_cached_results_and_caches_what_ran() -> None:
    # Prepare
    net = _filter()
    cache = HKNNCache(capacity=16, dim=net.embedding_dim, k=1, theta_threshold=0.5)
    served = FilteredModel(net, none_result=0, cache=cache)
    x = _inputs()
    first_model, second_model = _Model(), _Model()

    # Execute: the first batch misses (empty cache) and fills it; the same inputs hit
    first = served(x, first_model)
    second = served(x, second_model)

    # Assert
    assert first_model.calls == [list(range(6))] and not first.reused.any()
    assert len(cache) == 6
    assert second.reused.all() and second_model.calls == []
    assert second.results.tolist() == first.results.tolist()
    assert cache.stats.hits == 6


@pytest.mark.parametrize("failure", ["nan-weights", "wrong-shape"])
def test_a_failing_filter_falls_back_to_the_model_and_changes_nothing(
    failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare
    net = _filter(3.0)
    cache = HKNNCache(capacity=16, dim=net.embedding_dim, k=1)
    served = FilteredModel(net, none_result=0, skip_threshold=0.5, cache=cache)
    cache.insert(np.zeros((1, net.embedding_dim), dtype=np.float32), np.array([7]))
    before = (cache.keys.tolist(), cache.values.tolist(), cache.uses.tolist())
    x = _inputs()
    if failure == "nan-weights":
        with torch.no_grad():
            next(net.features.parameters()).fill_(float("nan"))
    else:
        x = np.zeros((6, DIM + 1), dtype=np.float32)  # not the filter's input shape
    model = _Model()

    # Execute
    out = served(x, model)

    # Assert: every input ran through the model; the cache is untouched
    assert model.calls == [list(range(6))]
    assert out.results.tolist() == list(range(10, 16))
    assert not out.skipped.any() and not out.reused.any() and out.ran_model.all()
    assert out.fallback and served.failures == 1
    assert (cache.keys.tolist(), cache.values.tolist(), cache.uses.tolist()) == before
    assert "input filter failed, running the model" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"skip_threshold": 1.5}, "skip_threshold is 1.5; expected a probability"),
        ({"skip_threshold": float("nan")}, "skip_threshold"),
        ({"cache": HKNNCache(capacity=4, dim=3, k=1)}, "cache has dim 3"),
        ({"none_result": float("inf")}, "none_result"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"none_result": 0}
    settings.update(kwargs)
    with pytest.raises(ValueError, match=message):
        FilteredModel(_filter(), **settings)  # type: ignore[arg-type]


def test_multi_task_filter_and_empty_cache_are_refused() -> None:
    multi = InputFilter(feature_network("vector", (DIM,), seed=0), num_tasks=2)
    with pytest.raises(ValueError, match="2 tasks; expected a single-task filter"):
        FilteredModel(multi, none_result=0)
    with pytest.raises(ValueError, match="capacity"):
        HKNNCache(capacity=0, dim=DIM)


def test_a_model_answering_the_wrong_shape_is_an_error_not_a_fallback() -> None:
    served = FilteredModel(_filter(-3.0), none_result=0, skip_threshold=0.5)
    with pytest.raises(ValueError, match=r"the model returned shape \(2,\) for 6"):
        served(_inputs(), lambda rows: np.zeros(2))
