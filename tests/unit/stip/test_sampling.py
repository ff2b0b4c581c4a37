"""The data owner's next-token choice from real (un-permuted) logits."""

from __future__ import annotations

import torch

from edgecloud.stip.runtime import sample_next


def test_greedy_top_k_one_and_seeded_sampling() -> None:
    logits = torch.tensor([0.1, 2.0, 1.9, -1.0])
    assert sample_next(logits) == 1
    # top-k = 1 keeps only the best token, whatever the temperature
    gen = torch.Generator().manual_seed(0)
    assert (
        sample_next(logits, greedy=False, top_k=1, temperature=5.0, generator=gen) == 1
    )
    # the same seed gives the same draws; top-k = 2 never picks tokens 0 or 3
    draws = [
        sample_next(
            logits, greedy=False, top_k=2, generator=torch.Generator().manual_seed(s)
        )
        for s in range(50)
    ]
    again = [
        sample_next(
            logits, greedy=False, top_k=2, generator=torch.Generator().manual_seed(s)
        )
        for s in range(50)
    ]
    assert draws == again and set(draws) == {1, 2}
