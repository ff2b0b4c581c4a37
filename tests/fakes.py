"""A fake Flower grid for unit tests of server workflows (fabricated replies)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

from flwr.app import Error, Message, RecordDict

# message -> reply (or None: no reply before the timeout)
Answer = Callable[[Message], Message | None]


class FakeGrid:
    """Answers each message with ``answer(message)``; records what was sent.

    Like Flower's grids it sets each message's id when it "pushes" it, and the
    fabricated replies answer that id (``Message(content, reply_to=message)``).
    """

    def __init__(self, answer: Answer, node_ids: Sequence[int] = (1, 2)) -> None:
        self.answer = answer
        self.node_ids = list(node_ids)
        self.sent: list[list[Message]] = []  # one list per send_and_receive
        self._ids = itertools.count()

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        batch = list(messages)
        self.sent.append(batch)
        replies = []
        for message in batch:
            message.metadata.__dict__["_message_id"] = f"msg-{next(self._ids)}"
            reply = self.answer(message)
            if reply is not None:
                replies.append(reply)
        return replies


def reply(message: Message, content: RecordDict) -> Message:
    """A client's reply to ``message``."""
    return Message(content, reply_to=message)


def error_reply(message: Message, reason: str, code: int = 2) -> Message:
    """An error reply to ``message`` (a ClientApp exception, code 2)."""
    return Message(Error(code=code, reason=reason), reply_to=message)
