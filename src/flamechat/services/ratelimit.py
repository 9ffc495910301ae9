"""Rate limits (the ``limits`` library, in memory) and login backoff.

Limits are per user (messages and bytes of message text sent per minute,
bytes of files uploaded per hour), per peer node (federation requests per
second), and per client address and per account (login attempts per minute);
the directory limits each node's requests per second (:class:`NodeRequests`).
A refusal is :class:`RateLimited` with a ``retry_after`` in seconds, which the
HTTP layer sends as ``Retry-After``; one request that alone costs more than a
whole window could never pass by waiting, so it is ``413 payload_too_large``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from flamechat.protocol import errors
from flamechat.services.clock import Clock

# What each limit counts, in the words of its refusal.
_WHAT = {
    "messages": "messages sent",
    "bytes": "bytes of message text sent",
    "file-bytes": "bytes of files sent",
    "peer": "requests from your node",
    "login-address": "login attempts from this address",
    "login-account": "login attempts on this account",
    "incoming": "envelopes from this sender",
    "incoming-bytes": "bytes of envelopes from this sender",
}
_BY_COST = ("bytes", "file-bytes", "incoming-bytes")  # counted by size, on fixed windows
# A sender's node holds them to the rates above; this node holds what arrives from
# each sender to a few times that (a node may ignore its own limits), enough for
# receipts and for a backlog sent after an outage, too little to fill a disk.
INCOMING_FACTOR = 5


@dataclass(frozen=True)
class RateSettings:
    # 120 messages a minute of at most 64 KiB could be 7.5 MiB: the text limit is
    # lower, so that it is the one a flood of large messages meets.
    messages_per_minute: int = 120
    bytes_per_minute: int = 2 * 1024 * 1024
    file_bytes_per_hour: int = 10 * 1024**3
    peer_requests_per_second: int = 200
    logins_per_minute_per_address: int = 30
    logins_per_minute_per_account: int = 10
    login_free_failures: int = 5
    login_max_lockout: float = 900.0


class LoginBackoff:
    """After ``free`` failed logins on an account, each further failure doubles
    the wait before the next attempt (1 s, 2 s, 4 s, … up to ``cap``). A
    success clears it. Pure: the clock is passed in."""

    def __init__(self, clock: Clock, *, free: int, cap: float) -> None:
        self.clock = clock
        self.free = free
        self.cap = cap
        self._failures: dict[str, tuple[int, float]] = {}

    def check(self, account: str) -> None:
        _failures, locked_until = self._failures.get(account, (0, 0.0))
        wait = locked_until - self.clock.now()
        if wait > 0:
            raise errors.RateLimited(
                "too many failed logins; wait before trying again", retry_after=math.ceil(wait)
            )

    def failed(self, account: str) -> None:
        # Re-inserted at the end: when memory is trimmed, the accounts failing
        # right now (the ones under attack) are the last to be forgotten.
        failures, _ = self._failures.pop(account, (0, 0.0))
        failures += 1
        over = failures - self.free
        lock = min(self.cap, 2.0 ** (over - 1)) if over > 0 else 0.0
        self._failures[account] = (failures, self.clock.now() + lock)
        if len(self._failures) > 100_000:  # bounded: forget the oldest entries
            for key in list(self._failures)[:10_000]:
                del self._failures[key]

    def succeeded(self, account: str) -> None:
        self._failures.pop(account, None)


class TokenBucket:
    """At most ``rate`` takes a second on average, ``burst`` at once. Pure: the
    clock is passed in. For work that strangers can make this process do."""

    def __init__(self, clock: Clock, *, rate: float, burst: float) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = clock.now()

    def take(self) -> bool:
        now = self.clock.now()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class NodeRequests:
    """Requests one node may make of the directory API per second (a moving window
    in memory), counted once its signature holds: one node flooding the directory
    is refused (429 with ``retry_after``) while every other node is still answered."""

    def __init__(self, per_second: int) -> None:
        self.item = RateLimitItemPerSecond(per_second)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def admit(self, node_id: str) -> None:
        if not await self._limiter.hit(self.item, "directory-requests", node_id):
            stats = await self._limiter.get_window_stats(self.item, "directory-requests", node_id)
            raise errors.RateLimited(
                f"too many requests from your node: at most {self.item.amount} per second; "
                "wait before trying again",
                retry_after=retry_after(stats.reset_time),
            )


def retry_after(reset_time: float) -> int:
    """Whole seconds until a window of the ``limits`` library lets one more in.

    reset_time is on the library's own (wall) clock, and the window still refuses
    at exactly reset_time: round to the next whole second so that waiting
    Retry-After seconds is always enough."""
    return max(1, math.floor(reset_time - time.time()) + 1)


class RateLimits:
    def __init__(self, settings: RateSettings, clock: Clock) -> None:
        self.settings = settings
        storage = MemoryStorage()
        # Counts use exact moving windows, which keep one timestamp per unit of
        # cost: right for messages and requests, ruinous for bytes (2 MiB a
        # minute would be 2 million timestamps per user). Bytes use a fixed
        # window, one counter per user and minute (text) or hour (files).
        self._limiter = MovingWindowRateLimiter(storage)
        self._by_cost = FixedWindowRateLimiter(storage)
        self._items: dict[str, RateLimitItem] = {
            "messages": RateLimitItemPerMinute(settings.messages_per_minute),
            "bytes": RateLimitItemPerMinute(settings.bytes_per_minute),
            "file-bytes": RateLimitItemPerHour(settings.file_bytes_per_hour),
            "peer": RateLimitItemPerSecond(settings.peer_requests_per_second),
            "login-address": RateLimitItemPerMinute(settings.logins_per_minute_per_address),
            "login-account": RateLimitItemPerMinute(settings.logins_per_minute_per_account),
            "incoming": RateLimitItemPerMinute(INCOMING_FACTOR * settings.messages_per_minute),
            # Sealed content is about 4/3 of the text (base64 inside), plus padding.
            "incoming-bytes": RateLimitItemPerMinute(INCOMING_FACTOR * 2 * settings.bytes_per_minute),
        }
        self.logins = LoginBackoff(clock, free=settings.login_free_failures, cap=settings.login_max_lockout)

    async def hit(self, kind: str, key: str, cost: int = 1) -> None:
        item = self._items[kind]
        window = item.GRANULARITY.name  # "second", "minute", "hour": every item here is per one
        if cost > item.amount:
            # Waiting cannot help: this request alone is over the whole window.
            raise errors.PayloadTooLarge(
                f"this is {cost} {_WHAT[kind]} at once; the limit is {item.amount} per {window}",
                limit=item.amount,
                window=window,
            )
        limiter = self._by_cost if kind in _BY_COST else self._limiter
        if not await limiter.hit(item, kind, key, cost=cost):
            stats = await limiter.get_window_stats(item, kind, key)
            raise errors.RateLimited(
                f"too many {_WHAT[kind]}: at most {item.amount} per {window}; wait before trying again",
                retry_after=retry_after(stats.reset_time),
            )
