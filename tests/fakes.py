"""A fake Flower grid for unit tests of server workflows (fabricated replies)."""

from __future__ import annotations

import itertools
import threading
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
        self.pushed: list[Message] = []  # push_messages: answered in threads
        self._ids = itertools.count()
        self._replies: dict[str, Message | None] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

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

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Like Flower's push: each message is answered concurrently (a thread)."""
        ids = []
        for message in messages:
            mid = f"msg-{next(self._ids)}"
            message.metadata.__dict__["_message_id"] = mid
            self.pushed.append(message)
            thread = threading.Thread(target=self._answer_later, args=(message,))
            thread.start()
            self._threads.append(thread)
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        """The replies that are ready (a handler that raised gives an error reply)."""
        with self._lock:
            ready = [i for i in message_ids if self._replies.get(i) is not None]
            return [self._replies.pop(i) for i in ready]  # type: ignore[misc]

    def join(self, timeout: float = 60.0) -> None:
        """Wait for every answering thread (end of a test)."""
        for thread in self._threads:
            thread.join(timeout)

    def _answer_later(self, message: Message) -> None:
        try:
            answered = self.answer(message)
        except Exception as err:  # what a crashing ClientApp turns into
            answered = error_reply(message, f"{type(err).__name__}: {err}")
        with self._lock:
            self._replies[message.metadata.message_id] = answered


def reply(message: Message, content: RecordDict) -> Message:
    """A client's reply to ``message``."""
    return Message(content, reply_to=message)


def error_reply(message: Message, reason: str, code: int = 2) -> Message:
    """An error reply to ``message`` (a ClientApp exception, code 2)."""
    return Message(Error(code=code, reason=reason), reply_to=message)
