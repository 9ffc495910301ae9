"""Bounded pipelines: the event loop receives while threads work.

Hashing, AEAD and file writes release the GIL, so handing them to a thread
lets a transfer's bytes be checked and written on one core while the next
bytes arrive on the other. Two stages side by side (each ``put`` the same
pieces), or one feeding the next (``then``: what the first returns goes to
the second), overlap two kinds of work, such as checking and writing or
sealing and writing. Memory stays bounded: ``put`` waits once ``depth``
pieces are queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

BATCH_BYTES = 4 * 1024 * 1024


class ThreadStage:
    """Calls blocking ``work(piece)`` for every piece put, in order, off the loop.

    With ``then``, whatever non-empty bytes ``work`` returns are put to that
    stage, in order (and its error becomes this stage's). Close this stage
    before ``then``.
    """

    def __init__(
        self, work: Callable[[bytes], bytes | None], *, depth: int = 16, then: ThreadStage | None = None
    ) -> None:
        self._work = work
        self._then = then
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def put(self, piece: bytes) -> None:
        """Queue a piece; raises the worker's error as soon as there is one."""
        if self._error is not None:
            raise self._error
        await self._queue.put(piece)

    async def close(self) -> None:
        """Wait until every queued piece is done; raise the worker's error if any."""
        if not self._task.done():
            await self._queue.put(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._error is not None:
            raise self._error

    async def abort(self) -> None:
        """Stop without finishing what is queued."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def _run(self) -> None:
        while True:
            piece = await self._queue.get()
            batch: list[bytes] = []
            size = 0
            done = piece is None
            if piece is not None:
                batch.append(piece)
                size += len(piece)
            while not done and size < BATCH_BYTES and not self._queue.empty():
                more = self._queue.get_nowait()
                if more is None:
                    done = True
                else:
                    batch.append(more)
                    size += len(more)
            if batch and self._error is None:
                try:
                    out = await asyncio.to_thread(self._each, batch)
                    if self._then is not None:
                        for result in out:
                            await self._then.put(result)
                except Exception as exc:  # handed to the producer at its next put or close
                    self._error = exc
            if done:
                return

    def _each(self, batch: list[bytes]) -> list[bytes]:
        out = []
        for piece in batch:
            result = self._work(piece)
            if result:
                out.append(result)
        return out
