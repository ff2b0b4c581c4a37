"""Bytes on the wire, counted one way for every capability (Flower's count_bytes)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flwr.app import Message


def message_bytes(message: Message) -> int:
    """Size of a message's records as Flower counts them (0 for error replies)."""
    if message.has_error():
        return 0
    return sum(record.count_bytes() for record in message.content.values())


@dataclass
class Traffic:
    """Bytes sent to clients (down), received from them (up), and exchanges made.

    One lock-step exchange is one ``send_and_receive`` to every node still in the
    conversation; a FedAvg round has two (train, evaluate), a split round one per
    optimizer step.
    """

    bytes_down: int = 0
    bytes_up: int = 0
    exchanges: int = 0

    def sent(self, messages: Iterable[Message]) -> None:
        """Count messages sent to clients."""
        self.bytes_down += sum(message_bytes(m) for m in messages)

    def received(self, replies: Iterable[Message]) -> None:
        """Count replies received from clients (error replies carry no content)."""
        self.bytes_up += sum(message_bytes(r) for r in replies)

    def add(self, other: Traffic) -> None:
        """Add another tally to this one."""
        self.bytes_down += other.bytes_down
        self.bytes_up += other.bytes_up
        self.exchanges += other.exchanges

    @property
    def total(self) -> int:
        """Bytes in both directions."""
        return self.bytes_down + self.bytes_up
