"""Refuse replays: a bounded memory of recently seen keys within a time window.

Pure: the clock is passed in as a number (seconds), never read here.
"""

from __future__ import annotations

import heapq


class ReplayGuard:
    """Accept each key at most once while it could still be valid.

    A request is fresh while its timestamp is within ``window`` seconds of
    now (either side), so a key is remembered until its timestamp leaves the
    window: after that, the freshness check alone refuses a replay.

    At most ``capacity`` keys are kept. When a flood fills the memory, the
    key with the oldest timestamp is forgotten and every request stamped at
    or before that time is refused from then on: bounded memory never
    reopens the door to a replay; at worst it narrows the window.
    """

    def __init__(self, *, window: float = 60.0, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.window = window
        self.capacity = capacity
        self._seen: dict[str, float] = {}
        self._by_time: list[tuple[float, str]] = []  # heap of (timestamp, key)
        self._floor = float("-inf")  # timestamps at or below were possibly forgotten

    def fresh(self, timestamp: float, now: float) -> bool:
        return abs(now - timestamp) <= self.window

    def check(self, key: str, timestamp: float, now: float) -> bool:
        """True (and remember ``key``) if the request is fresh and new."""
        self._expire(now)
        if not self.fresh(timestamp, now) or timestamp <= self._floor or key in self._seen:
            return False
        self._seen[key] = timestamp
        heapq.heappush(self._by_time, (timestamp, key))
        while len(self._seen) > self.capacity:
            oldest, forgotten = heapq.heappop(self._by_time)
            del self._seen[forgotten]
            self._floor = max(self._floor, oldest)
        return True

    def _expire(self, now: float) -> None:
        while self._by_time and self._by_time[0][0] < now - self.window:
            _timestamp, key = heapq.heappop(self._by_time)
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)
