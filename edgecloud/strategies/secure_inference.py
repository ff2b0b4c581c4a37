"""STIP secure inference as a Flower protocol (thesis chapter 4, corrected).

Yuan et al., "Secure Transformer Inference Made Non-interactive" / thesis ch. 4:
a model developer permutes the model's feature space; the ServerApp (model
server) runs the permuted model on permuted embeddings; each ClientApp (data
owner) embeds locally, permutes, and un-permutes what comes back.

One round = one message to every active client:

* round 1 (``phase=start``): the client answers with its permuted prompt (or
  input) embeddings ``(T, d)``;
* each later round carries the permuted logits of the client's last position;
  the client un-permutes, picks the next token and answers with that token's
  permuted embedding ``(1, d)`` - or ``done`` once it has generated
  ``max_new_tokens``. Classifiers (BERT, ViT) finish after one forward.

The server keeps a KV cache per client and batches clients at the same position
into one forward. Generating ``n`` tokens costs ``n + 1`` message round trips
(~0.1 s each in simulation, ~5 s in deployment).

What the client **must** do: answer ``query.stip_step`` with ``embeds`` (float32,
``(T, d)``) or ``done=True``; never send plaintext embeddings or tokens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from logging import INFO, WARNING
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid

from edgecloud.protocol import MSG_STIP_STEP, STIP, STIP_EMBEDS, STIP_LOGITS
from edgecloud.strategies.round_tracking import message_bytes

SECURE_INFERENCE = "secure-inference"
# Permuted logits sent back to a client (None before its first forward).
Logits = npt.NDArray[np.float32]
STIP_RESULTS = "stip_results.json"


class PermutedModelServer(Protocol):
    """What the strategy needs from the model server (``stip.StipServer``)."""

    @property
    def hidden_size(self) -> int:
        """Width of the permuted embeddings."""

    @property
    def is_generator(self) -> bool:
        """True for language models (token by token), False for classifiers."""

    def step(self, requests: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Extend sessions by permuted embeddings; permuted last-position logits."""

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        """Permuted logits of a batch of permuted embeddings (classifiers)."""

    def end(self, session_id: str) -> None:
        """Drop a session's cache."""


@dataclass
class StipRound:
    """What one round cost."""

    round: int
    clients: int
    new_positions: int
    seconds: float
    server_seconds: float
    bytes_down: int
    bytes_up: int
    finished: int
    dropped: int


@dataclass
class StipRun:
    """The run's summary, written to ``stip_results.json``."""

    rounds: list[StipRound] = field(default_factory=list)
    generated_tokens: int = 0
    dropped_nodes: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Totals and rates over the run."""
        seconds = sum(r.seconds for r in self.rounds)
        steps = [r for r in self.rounds if r.round > 1]
        return {
            "rounds": float(len(self.rounds)),
            "seconds": seconds,
            "server_seconds": sum(r.server_seconds for r in self.rounds),
            "generated_tokens": float(self.generated_tokens),
            "tokens_per_second": self.generated_tokens / seconds if seconds else 0.0,
            "seconds_per_round_trip": (
                float(np.mean([r.seconds for r in steps])) if steps else 0.0
            ),
            "bytes_up": float(sum(r.bytes_up for r in self.rounds)),
            "bytes_down": float(sum(r.bytes_down for r in self.rounds)),
        }


class SecureInference:
    """Serve a permuted model to every connected client until all are done.

    Parameters
    ----------
    server : PermutedModelServer
        The permuted model (it never holds a permutation).
    max_rounds : int
        Upper bound on rounds (``max_new_tokens + 1`` for generation).
    round_timeout : float
        Seconds to wait for replies in one round.
    output_dir : pathlib.Path
        Where ``stip_results.json`` goes.
    """

    def __init__(
        self,
        server: PermutedModelServer,
        max_rounds: int,
        round_timeout: float,
        output_dir: Path,
    ) -> None:
        self.server = server
        self.max_rounds = max_rounds
        self.round_timeout = round_timeout
        self.output_dir = output_dir

    def run(self, grid: Grid, nodes: list[int]) -> StipRun:
        """Run the protocol with ``nodes``; returns (and writes) the summary."""
        result = StipRun()
        active: dict[int, Logits | None] = {node: None for node in nodes}
        for rnd in range(1, self.max_rounds + 1):
            if not active:
                break
            record, active = self._round(grid, rnd, active, result)
            result.rounds.append(record)
            log(
                INFO,
                "stip round %d: %d clients, %d new positions, %.3f s (server %.3f s), "
                "%d B down, %d B up",
                rnd,
                record.clients,
                record.new_positions,
                record.seconds,
                record.server_seconds,
                record.bytes_down,
                record.bytes_up,
            )
        for node in active:  # still generating when max_rounds ran out
            self.server.end(str(node))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "summary": result.summary(),
            "rounds": [asdict(r) for r in result.rounds],
            "dropped_nodes": result.dropped_nodes,
        }
        (self.output_dir / STIP_RESULTS).write_text(
            json.dumps(payload, indent=2) + "\n"
        )
        log(INFO, "stip summary: %s", payload["summary"])
        return result

    # ------------------------------------------------------------------ round
    def _round(
        self,
        grid: Grid,
        rnd: int,
        active: dict[int, Logits | None],
        result: StipRun,
    ) -> tuple[StipRound, dict[int, Logits | None]]:
        started = time.perf_counter()
        messages = [self._message(node, rnd, logits) for node, logits in active.items()]
        bytes_down = sum(message_bytes(m) for m in messages)
        replies = {
            r.metadata.src_node_id: r
            for r in grid.send_and_receive(messages, timeout=self.round_timeout)
        }
        bytes_up, finished, dropped = 0, 0, 0
        requests: dict[str, torch.Tensor] = {}
        for node in active:
            reply = replies.get(node)
            try:
                embeds = self._read(node, reply)
            except ValueError as err:
                log(WARNING, "stip: dropping node %d in round %d: %s", node, rnd, err)
                self.server.end(str(node))
                result.dropped_nodes.append(node)
                dropped += 1
                continue
            assert reply is not None
            bytes_up += message_bytes(reply)
            if embeds is None:
                self.server.end(str(node))
                finished += 1
                continue
            requests[str(node)] = embeds
        server_started = time.perf_counter()
        outputs = self._compute(requests)
        server_seconds = time.perf_counter() - server_started
        new_positions = sum(int(e.shape[-2]) for e in requests.values())
        if self.server.is_generator and rnd > 1:
            # every client that answered sampled one token (the done ones too)
            result.generated_tokens += len(requests) + finished
        following: dict[int, Logits | None] = {
            int(sid): out.numpy() for sid, out in outputs.items()
        }
        record = StipRound(
            round=rnd,
            clients=len(active),
            new_positions=new_positions,
            seconds=time.perf_counter() - started,
            server_seconds=server_seconds,
            bytes_down=bytes_down,
            bytes_up=bytes_up,
            finished=finished,
            dropped=dropped,
        )
        return record, following

    def _compute(self, requests: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not requests:
            return {}
        if self.server.is_generator:
            return self.server.step(requests)
        # Classifiers: one forward per client batch, no cache.
        return {
            sid: self.server.forward(e if e.dim() == 3 else e[None])
            for sid, e in requests.items()
        }

    def _message(self, node: int, rnd: int, logits: Logits | None) -> Message:
        content = RecordDict(
            {
                STIP: ConfigRecord(
                    {"round": rnd, "phase": "start" if rnd == 1 else "continue"}
                )
            }
        )
        if logits is not None:
            content[STIP_LOGITS] = ArrayRecord(
                {"logits": Array(np.ascontiguousarray(logits, dtype=np.float32))}
            )
        return Message(
            content, dst_node_id=node, message_type=MSG_STIP_STEP, group_id=str(rnd)
        )

    def _read(self, node: int, reply: Message | None) -> torch.Tensor | None:
        """The reply's permuted embeddings, ``None`` when the client is done."""
        if reply is None:
            raise ValueError("no reply before the round timeout")
        if reply.has_error():
            raise ValueError(f"client error: {reply.error.reason}")
        control = reply.content.config_records.get(STIP)
        if control is None:
            raise ValueError(f"reply has no '{STIP}' config record")
        if control.get("done", False):
            return None
        record = reply.content.array_records.get(STIP_EMBEDS)
        if record is None or "embeds" not in record:
            raise ValueError(f"reply has no '{STIP_EMBEDS}' array record")
        embeds = record["embeds"].numpy()
        d = self.server.hidden_size
        expected = f"(tokens, {d}) or (batch, tokens, {d})"
        if embeds.dtype != np.float32 or embeds.ndim not in (2, 3):
            raise ValueError(
                f"embeds are {embeds.dtype} {embeds.shape}; expected float32 {expected}"
            )
        if embeds.shape[-1] != d or 0 in embeds.shape:
            raise ValueError(f"embeds have shape {embeds.shape}; expected {expected}")
        if self.server.is_generator and embeds.ndim != 2:
            raise ValueError(
                f"embeds have shape {embeds.shape}; expected (tokens, {d})"
            )
        if not np.isfinite(embeds).all():
            raise ValueError("embeds contain NaN or infinity")
        return torch.from_numpy(np.array(embeds))
