"""A circuit breaker: a party that just failed is skipped for a while.

After a failure, callers skip the party for ``base`` seconds, doubling with
each further failure up to ``cap``. Once that time has passed, one caller at
a time may try it again (the probe); its success closes the breaker, its
failure opens it for longer. Nothing is remembered about parties that answer,
and time comes from the clock passed in, so tests move it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from flamechat.services.clock import Clock

MAX_REMEMBERED = 10_000


@dataclass
class _Open:
    failures: int
    until: float
    probing: bool = False


class Breaker:
    def __init__(self, clock: Clock, *, base: float = 5.0, cap: float = 300.0) -> None:
        self.clock = clock
        self.base = base
        self.cap = cap
        self._open: dict[str, _Open] = {}

    def allow(self, key: str) -> bool:
        """May ``key`` be tried now? (Claims the probe when its wait is over.)"""
        state = self._open.get(key)
        if state is None:
            return True
        if state.probing or self.clock.now() < state.until:
            return False
        state.probing = True
        return True

    def succeeded(self, key: str) -> None:
        self._open.pop(key, None)

    def failed(self, key: str) -> None:
        state = self._open.get(key)
        if state is None:
            if len(self._open) >= MAX_REMEMBERED:
                self._open.clear()  # bounded; forgetting only costs a retry
            state = self._open[key] = _Open(0, 0.0)
        state.failures += 1
        state.probing = False
        state.until = self.clock.now() + min(self.cap, self.base * 2.0 ** min(state.failures - 1, 32))

    def abandoned(self, key: str) -> None:
        """An allowed call ended with no answer either way (cancelled): free the probe."""
        state = self._open.get(key)
        if state is not None:
            state.probing = False

    def is_open(self, key: str) -> bool:
        return key in self._open
