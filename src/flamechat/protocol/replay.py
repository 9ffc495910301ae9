"""Refuse replays: a bounded memory of recently seen keys within a time window.

Pure: the clock is passed in as a number (seconds), never read here.
"""

from __future__ import annotations

from collections import OrderedDict


class ReplayGuard:
    """Accept each key at most once while it could still be valid.

    ``window`` is the allowed clock skew either side; a key is remembered for
    twice that long, and at most ``capacity`` keys are kept (the oldest go
    first, and they are the first to leave the window anyway).
    """

    def __init__(self, *, window: float = 60.0, capacity: int = 100_000) -> None:
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def fresh(self, timestamp: float, now: float) -> bool:
        return abs(now - timestamp) <= self.window

    def check(self, key: str, timestamp: float, now: float) -> bool:
        """True (and remember ``key``) if the request is fresh and new."""
        self._expire(now)
        if not self.fresh(timestamp, now) or key in self._seen:
            return False
        self._seen[key] = now + 2 * self.window
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        while self._seen:
            key, expires = next(iter(self._seen.items()))
            if expires > now:
                break
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)
