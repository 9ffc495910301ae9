"""The outbox worker: deliver sealed envelopes, retrying with backoff.

Rules:
* Envelopes between one sender and one recipient leave in the order they
  were queued: only the oldest queued envelope of each pair is in flight.
* Pairs are independent, so a slow or dead peer delays only its own pairs;
  at most ``concurrency`` deliveries run at once, each with a timeout set
  by the peer client.
* Transient failures (unreachable, timeout, 5xx) are retried after
  ``min(max_delay, base_delay * 2**attempts)``, scaled by a random factor in
  [0.5, 1.0] (jitter). Refusals (4xx) and expiry fail the message visibly.
* Once an envelope has waited ``relay_after`` seconds and its recipient's
  node is still unreachable, it is deposited at a relay instead; the relay
  then owns it, and the sender's node forgets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable

from flamechat.protocol import errors
from flamechat.services.clock import Clock, ms
from flamechat.services.directory_view import DirectoryView
from flamechat.services.messaging import MessagingService
from flamechat.services.ports import PeerPort, TransportError
from flamechat.services.relay import RelayService
from flamechat.storage import node_messages
from flamechat.storage.database import Database
from flamechat.storage.records import OutboxItem

log = logging.getLogger(__name__)


def backoff_delay(
    attempts: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before attempt ``attempts + 1`` (``attempts`` >= 1)."""
    raw = min(cap, base * 2.0 ** min(max(0, attempts - 1), 64))  # 2.0**1024 would overflow
    return float(raw * (0.5 + rng() / 2))


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        directory: DirectoryView,
        peers: PeerPort,
        messaging: MessagingService,
        relay: RelayService | None,
        clock: Clock,
        *,
        node_id: str,
        relay_after: float = 30.0,
        concurrency: int = 32,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.db = db
        self.directory = directory
        self.peers = peers
        self.messaging = messaging
        self.relay = relay
        self.relay_after = relay_after
        self.clock = clock
        self.node_id = node_id
        self.concurrency = concurrency
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.rng = rng
        self._wake = asyncio.Event()
        self._inflight: dict[tuple[str, str], asyncio.Task[None]] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self, *, idle_wait: float = 1.0) -> None:
        """Deliver forever (until cancelled)."""
        while True:
            try:
                await self.dispatch()
            except Exception:  # keep the worker alive; the error is in the log
                log.exception("delivery round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=idle_wait)
            self._wake.clear()

    async def dispatch(self) -> int:
        """Start deliveries for due pair heads; return how many started."""
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        async with self.db.read() as conn:
            heads = await node_messages.due_heads(conn, ms(self.clock), limit=free + len(self._inflight))
        started = 0
        for item in heads:
            pair = (item.sender, item.recipient)
            if pair in self._inflight or started >= free:
                continue
            task = asyncio.create_task(self._deliver(item))
            self._inflight[pair] = task
            task.add_done_callback(self._done_callback(pair))
            started += 1
        return started

    def _done_callback(self, pair: tuple[str, str]) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._inflight.pop(pair, None)
            self._wake.set()  # the pair's next envelope may go now

        return done

    async def drain(self, *, rounds: int = 100) -> None:
        """Test helper: dispatch until nothing is due or in flight (bounded)."""
        for _ in range(rounds):
            started = await self.dispatch()
            if self._inflight:
                await asyncio.gather(*self._inflight.values(), return_exceptions=True)
            elif not started:
                return

    async def _deliver(self, item: OutboxItem) -> None:
        now = ms(self.clock)
        if item.expires_at <= now:
            await self._fail(item, "expired: the recipient's node could not be reached in time")
            return
        payload = json.loads(item.payload)
        home: str | None = None
        try:
            user = await self.directory.resolve(item.recipient, max_age=3600)
            home = user.home_node
            if home == self.node_id:
                await self.messaging.receive(self.node_id, payload)
            elif user.node_url is None:
                raise TransportError("recipient has no known node", transient=True)
            else:
                await self.peers.deliver(user.node_url, payload)
        except TransportError as exc:
            if exc.transient:
                if await self._try_relay(item, home, payload):
                    return
                await self._retry(item, str(exc))
            else:
                await self._fail(item, f"refused by the recipient's node: {exc.code or exc}")
            return
        except errors.DirectoryUnavailable as exc:
            await self._retry(item, str(exc))
            return
        except errors.FlameError as exc:
            await self._fail(item, f"{exc.code}: {exc.message}")
            return
        async with self.db.write() as conn:
            await node_messages.remove(conn, item.seq)
        await self.messaging.set_state(item.sender, item.envelope_id, "sent")

    async def _try_relay(self, item: OutboxItem, home: str | None, payload: dict[str, object]) -> bool:
        waited = (ms(self.clock) - item.created_at) / 1000
        if self.relay is None or home is None or home == self.node_id or waited < self.relay_after:
            return False
        relay_id = await self.relay.deposit(home, payload)
        if relay_id is None:
            return False
        log.info("deposited %s for %s at relay %s", item.envelope_id, item.recipient, relay_id)
        async with self.db.write() as conn:
            await node_messages.remove(conn, item.seq)
        await self.messaging.set_state(item.sender, item.envelope_id, "sent")
        return True

    async def _retry(self, item: OutboxItem, error: str) -> None:
        attempts = item.attempts + 1
        delay = backoff_delay(attempts, base=self.base_delay, cap=self.max_delay, rng=self.rng)
        log.info(
            "delivery of %s to %s failed (%s); retry in %.1fs", item.envelope_id, item.recipient, error, delay
        )
        async with self.db.write() as conn:
            await node_messages.reschedule(
                conn,
                item.seq,
                attempts=attempts,
                next_attempt_at=ms(self.clock) + int(delay * 1000),
                error=error,
            )

    async def _fail(self, item: OutboxItem, error: str) -> None:
        log.warning("giving up on %s to %s: %s", item.envelope_id, item.recipient, error)
        async with self.db.write() as conn:
            await node_messages.remove(conn, item.seq)
        await self.messaging.set_state(item.sender, item.envelope_id, "failed", error)
