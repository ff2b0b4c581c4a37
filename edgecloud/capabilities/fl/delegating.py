"""A Strategy that forwards every call to an inner Strategy: base of our wrappers."""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


class DelegatingStrategy(Strategy):
    """Forward all five Strategy hooks to ``inner``; subclasses override one or two.

    This mirrors Flower's own DP wrappers (which hold the wrapped strategy in
    ``.strategy``), so wrappers of both kinds compose in any order.
    """

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Forward to the inner strategy."""
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Forward to the inner strategy."""
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Forward to the inner strategy."""
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Forward to the inner strategy."""
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        """Forward to the inner strategy."""
        self.inner.summary()


def unwrap(strategy: Strategy) -> list[Strategy]:
    """The chain ``[strategy, inner, inner.inner, ...]`` through both wrapper kinds."""
    chain = [strategy]
    while True:
        inner = getattr(chain[-1], "inner", None) or getattr(
            chain[-1], "strategy", None
        )
        if not isinstance(inner, Strategy):
            return chain
        chain.append(inner)
