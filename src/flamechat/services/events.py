"""Live events for a user's open browser tabs (fed to SSE), and who is connected.

Each subscriber gets a bounded queue; a subscriber too slow to keep up loses
the oldest events and is told to resynchronise (``resync``) rather than
letting memory grow. One process only: a multi-worker deployment fans out
through the database or Redis (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

QUEUE_LENGTH = 256


@dataclass(eq=False)  # compared and hashed by identity: each tab is its own subscription
class Subscription:
    username: str
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(maxsize=QUEUE_LENGTH))


class EventHub:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._listeners: list[Callable[[str, bool], None]] = []

    def on_presence_change(self, listener: Callable[[str, bool], None]) -> None:
        """``listener(username, online)`` when a user's first tab opens or last closes."""
        self._listeners.append(listener)

    def subscribe(self, username: str) -> Subscription:
        sub = Subscription(username)
        first = not self._subs[username]
        self._subs[username].add(sub)
        if first:
            for listener in self._listeners:
                listener(username, True)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.username)
        if not subs or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.username]
            for listener in self._listeners:
                listener(sub.username, False)

    def connected(self) -> set[str]:
        return set(self._subs)

    def publish(self, username: str, event: dict[str, Any]) -> None:
        for sub in list(self._subs.get(username, ())):
            if sub.queue.full():
                _drain(sub.queue)
                sub.queue.put_nowait({"type": "resync"})
            sub.queue.put_nowait(event)

    def broadcast(self, event: dict[str, Any]) -> None:
        for username in list(self._subs):
            self.publish(username, event)


def _drain(queue: asyncio.Queue[dict[str, Any]]) -> None:
    while not queue.empty():
        queue.get_nowait()
