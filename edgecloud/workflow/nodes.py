"""Waiting for SuperNodes and sampling them, for workflows that drive the grid."""

from __future__ import annotations

import random
import time

from flwr.serverapp import Grid

from edgecloud.workflow.seeds import sampling_seed


def wait_for_nodes(grid: Grid, min_nodes: int, timeout: float) -> list[int]:
    """Block until ``min_nodes`` SuperNodes are connected; return their ids, sorted.

    Raises
    ------
    TimeoutError
        If fewer than ``min_nodes`` connected within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= min_nodes:
            return nodes
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"only {len(nodes)} SuperNode(s) connected after {timeout:.0f} s; "
                f"expected at least min-available-nodes={min_nodes}"
            )
        time.sleep(1.0)


def sample_nodes(
    grid: Grid,
    *,
    fraction: float,
    min_nodes: int,
    timeout: float,
    seed: int,
    server_round: int,
) -> list[int]:
    """``max(1, int(fraction * connected))`` nodes, drawn reproducibly per round.

    Waits for ``min_nodes`` first (see :func:`wait_for_nodes`).
    """
    nodes = wait_for_nodes(grid, min_nodes, timeout)
    count = max(1, int(len(nodes) * fraction))
    return random.Random(sampling_seed(seed, server_round)).sample(nodes, count)
