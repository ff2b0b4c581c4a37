"""Every derived random seed of a run, in one place (server, clients and tests agree).

The run config has one ``seed``; each consumer derives its own stream from it so that
rounds, clients and purposes never share random numbers and a run is reproducible.
"""

from __future__ import annotations

# Primes keep the derived seeds of different rounds / clients / purposes apart.
_ROUND, _SAMPLING, _STIP_NODE = 7919, 100_003, 1_009


def client_round_seed(seed: int, server_round: int, partition_id: int) -> int:
    """A client's local training stream in a round (batch order, shuffling)."""
    return seed + _ROUND * server_round + partition_id


def sampling_seed(seed: int, server_round: int) -> int:
    """The server's choice of clients in a round (workflows that sample themselves)."""
    return seed * _SAMPLING + server_round


def generation_seed(seed: int, partition_id: int, step: int) -> int:
    """A client's token sampling at one generation step (STIP ``sample`` mode)."""
    return seed * _SAMPLING + partition_id * _STIP_NODE + step
