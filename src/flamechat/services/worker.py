"""The loop every background worker shares (outbox delivery, file fetching).

A worker is woken when there is work (or every ``idle_wait`` seconds, to
catch retries that fell due), runs ``dispatch`` to start what it can, and
keeps at most one task per key in flight. Tests call ``drain`` instead of
``run``: it dispatches until nothing is due or in flight, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

log = logging.getLogger(__name__)


class Worker:
    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._inflight: dict[Hashable, asyncio.Task[None]] = {}

    def wake(self) -> None:
        self._wake.set()

    async def dispatch(self) -> int:
        """Start what is due; return how many tasks started."""
        raise NotImplementedError

    async def run(self, *, idle_wait: float = 1.0) -> None:
        """Work forever (until cancelled)."""
        while True:
            try:
                await self.dispatch()
            except Exception:  # keep the worker alive; the error is in the log
                log.exception("%s round failed", type(self).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=idle_wait)
            self._wake.clear()

    def in_flight(self, key: Hashable) -> bool:
        return key in self._inflight

    @property
    def running(self) -> int:
        return len(self._inflight)

    def start(
        self, key: Hashable, work: Coroutine[Any, Any, None], *, after: Callable[[], None] | None = None
    ) -> None:
        """Run ``work`` as the task for ``key``; when it ends, ``after()`` and look again."""
        task = asyncio.create_task(work)
        self._inflight[key] = task

        def done(_task: asyncio.Task[None]) -> None:
            self._inflight.pop(key, None)
            if after is not None:
                after()
            self._wake.set()  # the key's next work may start now

        task.add_done_callback(done)

    async def drain(self, *, rounds: int = 100) -> None:
        """Dispatch until nothing is due or in flight (bounded; for tests)."""
        for _ in range(rounds):
            started = await self.dispatch()
            if self._inflight:
                await asyncio.gather(*self._inflight.values(), return_exceptions=True)
            elif not started:
                return
