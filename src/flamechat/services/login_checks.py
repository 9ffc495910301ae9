"""What bounds the directory's password checks (``POST /directory/v1/logins``).

Each check is an Argon2id verification: about 0.1 s of CPU and 64 MiB with
the interactive profile. They run in threads, a few at once, so the directory
keeps answering everything else meanwhile; and each node and each account
gets a number of checks per minute (the ``limits`` library, moving windows in
memory), so that one node cannot keep the directory busy, nor guess one
account's password at the directory's expense. A refusal is
:class:`~flamechat.protocol.errors.RateLimited` with a ``retry_after``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from flamechat.protocol import errors
from flamechat.services.ratelimit import retry_after

T = TypeVar("T")


@dataclass(frozen=True)
class LoginCheckSettings:
    per_node_per_minute: int = 600
    per_account_per_minute: int = 20
    at_once: int = max(1, min(4, os.cpu_count() or 1))  # Argon2 verifications running together


class LoginChecks:
    def __init__(self, settings: LoginCheckSettings | None = None) -> None:
        self.settings = settings or LoginCheckSettings()
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._items = {
            "node": RateLimitItemPerMinute(self.settings.per_node_per_minute),
            "account": RateLimitItemPerMinute(self.settings.per_account_per_minute),
        }
        self._slots = asyncio.Semaphore(self.settings.at_once)

    async def admit(self, node_id: str, username: str) -> None:
        """Count one check for the node and for the account, or refuse it (429)."""
        for kind, key in (("node", node_id), ("account", username)):
            item = self._items[kind]
            if not await self._limiter.hit(item, "login-check", kind, key):
                stats = await self._limiter.get_window_stats(item, "login-check", kind, key)
                raise errors.RateLimited(
                    f"too many password checks for this {kind}; try again later",
                    retry_after=retry_after(stats.reset_time),
                )

    async def run(self, check: Callable[[], T]) -> T:
        """Run a blocking check in a thread, at most ``at_once`` of them together."""
        async with self._slots:
            return await asyncio.to_thread(check)
