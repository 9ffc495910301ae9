"""The outbox worker: deliver sealed envelopes, retrying with backoff.

Rules:
* Envelopes go to each recipient node in batches (up to ``max_batch``
  envelopes, ``max_batch_bytes`` of them), oldest first, one batch per
  node in flight: the receiving node stores a batch in one transaction,
  so a burst of messages costs one round trip and one fsync on each side,
  and envelopes between two people still leave in the order they were
  queued. (Conversations are shown in the sender's order whatever the
  arrival order, since retries and relays can reorder arrivals anyway.)
* Nodes are independent, so a slow or dead peer delays only its own
  envelopes; at most ``concurrency`` batches run at once, each with a
  timeout set by the peer client. The worker reads the outbox leaving out
  recipients whose node already has a batch in flight, and reads again
  (leaving out those it just served) while the window came back full, so a
  backlog for one node never hides a later envelope for another.
* Transient failures (unreachable, timeout, 5xx) are retried after
  ``min(max_delay, base_delay * 2**attempts)``, scaled by a random factor in
  [0.5, 1.0] (jitter). Refusals (4xx) and expiry fail the message visibly.
* Once an envelope has waited ``relay_after`` seconds and its recipient's
  node is still unreachable, it is deposited at a relay instead; the relay
  then owns it, and the sender's node forgets it. Deposits run a batch at a
  time, at most ``deposit_concurrency`` at once, and do not hold a delivery
  slot while they wait on a relay (when every deposit slot is busy, the
  envelopes wait for their next retry): a hanging relay cannot stall
  deliveries to healthy peers.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flamechat.protocol import errors
from flamechat.services.clock import Clock, ms
from flamechat.services.directory_view import DirectoryView
from flamechat.services.messaging import MessagingService
from flamechat.services.ports import PeerPort, TransportError
from flamechat.services.receiving import ReceivingService
from flamechat.services.relay import RelayService
from flamechat.services.worker import Worker
from flamechat.storage import node_messages
from flamechat.storage.database import Database
from flamechat.storage.records import KnownUser, OutboxItem

log = logging.getLogger(__name__)


def backoff_delay(
    attempts: int, *, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before attempt ``attempts + 1`` (``attempts`` >= 1)."""
    raw = min(cap, base * 2.0 ** min(max(0, attempts - 1), 64))  # 2.0**1024 would overflow
    return float(raw * (0.5 + rng() / 2))


MAX_BATCH = 100
MAX_BATCH_BYTES = 384 * 1024
MAX_HOMES = 4096  # recipients remembered with their node, to leave out those in flight
# Refusals of one envelope in a batch that are worth retrying later.
TRANSIENT_CODES = frozenset(
    {"directory_unavailable", "unavailable", "peer_unavailable", "rate_limited", "storage_busy"}
)


class DeliveryWorker(Worker):
    """One task per recipient node in flight (the keys are node ids)."""

    def __init__(
        self,
        db: Database,
        directory: DirectoryView,
        peers: PeerPort,
        messaging: MessagingService,
        relay: RelayService | None,
        clock: Clock,
        *,
        receiving: ReceivingService,
        node_id: str,
        relay_after: float = 30.0,
        concurrency: int = 32,
        deposit_concurrency: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
        max_batch: int = MAX_BATCH,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__()
        self.db = db
        self.directory = directory
        self.peers = peers
        self.messaging = messaging  # moves the sent messages' states
        self.receiving = receiving  # takes envelopes for this node's own users
        self.relay = relay
        self.relay_after = relay_after
        self.clock = clock
        self.node_id = node_id
        self.concurrency = concurrency
        self.deposit_concurrency = deposit_concurrency
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_batch = max_batch
        self.rng = rng
        self._busy: set[int] = set()  # outbox seqs in flight
        self._homes: dict[str, str] = {}  # recipient -> the node last resolved for them
        self._depositing: set[str] = set()  # destinations whose batch is at a relay

    @property
    def delivering(self) -> int:
        """Batches holding a delivery slot (those waiting on a relay do not)."""
        return self.running - len(self._depositing)

    async def dispatch(self) -> int:
        """Start a batch for every destination with due envelopes and none in flight."""
        free = self.concurrency - self.delivering
        if free <= 0:
            return 0
        now = ms(self.clock)
        window = self.max_batch * 4
        skip = {r for r, home in self._homes.items() if self.in_flight(home)}
        seen: set[int] = set()
        batches: dict[str, _Batch] = {}
        users: dict[str, KnownUser] = {}
        expired: list[OutboxItem] = []
        retry: list[tuple[OutboxItem, str]] = []
        refused: list[tuple[OutboxItem, str]] = []
        for _ in range(free + 1):
            async with self.db.read() as conn:
                due = await node_messages.due(conn, now, limit=window, skip_recipients=skip)
            for item in due:
                skip.add(item.recipient)  # the next read looks past this recipient
                if item.seq in self._busy or item.seq in seen:
                    continue
                seen.add(item.seq)
                if item.expires_at <= now:
                    expired.append(item)
                    continue
                try:
                    user = users.get(item.recipient) or await self.directory.resolve(
                        item.recipient, max_age=3600
                    )
                    users[item.recipient] = user
                except errors.DirectoryUnavailable as exc:
                    retry.append((item, exc.message))
                    continue
                except errors.FlameError as exc:
                    refused.append((item, f"{exc.code}: {exc.message}"))
                    continue
                destination = user.home_node or f"?{item.recipient}"
                self._remember_home(item.recipient, destination)
                if self.in_flight(destination):
                    continue
                batch = batches.get(destination)
                if batch is None:
                    if len(batches) >= free:
                        continue
                    batch = batches[destination] = _Batch(user, destination)
                if len(batch.items) < self.max_batch and (
                    not batch.items or batch.size + len(item.payload) <= MAX_BATCH_BYTES
                ):
                    batch.items.append(item)
                    batch.size += len(item.payload)
            if len(due) < window or len(batches) >= free:
                break  # saw everything due, or no slot is left to fill
        if expired or retry or refused:
            await self._settle(
                retry=retry,
                failed=[(i, "expired: the recipient's node could not be reached in time") for i in expired]
                + refused,
            )
        for destination, batch in batches.items():
            self._busy.update(i.seq for i in batch.items)
            self.start(destination, self._deliver(batch), after=self._release(batch))
        return len(batches)

    def _remember_home(self, recipient: str, destination: str) -> None:
        if recipient not in self._homes and len(self._homes) >= MAX_HOMES:
            self._homes.clear()  # bounded; forgetting only means reading a few more rows
        self._homes[recipient] = destination

    def _release(self, batch: _Batch) -> Callable[[], None]:
        def release() -> None:
            self._busy.difference_update(i.seq for i in batch.items)
            self._depositing.discard(batch.destination)

        return release

    async def _deliver(self, batch: _Batch) -> None:
        items, user = batch.items, batch.user
        payloads = [json.loads(item.payload) for item in items]
        try:
            if user.home_node == self.node_id:
                outcomes = [o.to_wire() for o in await self.receiving.receive_batch(self.node_id, payloads)]
            elif user.node_url is None:
                raise TransportError("recipient has no known node", transient=True)
            else:
                outcomes = await self.peers.deliver_batch(user.node_url, payloads)
        except TransportError as exc:
            if exc.transient:
                await self._unreachable(batch, payloads, str(exc))
            else:
                reason = f"refused by the recipient's node: {exc.code or exc}"
                await self._settle(failed=[(item, reason) for item in items])
            return
        except errors.DirectoryUnavailable as exc:
            await self._settle(retry=[(item, exc.message) for item in items])
            return
        except errors.FlameError as exc:
            await self._settle(failed=[(item, f"{exc.code}: {exc.message}") for item in items])
            return
        by_id = {o.get("id"): o for o in outcomes if isinstance(o, dict)}
        done: list[OutboxItem] = []
        retry: list[tuple[OutboxItem, str]] = []
        failed: list[tuple[OutboxItem, str]] = []
        for item in items:
            outcome = by_id.get(item.envelope_id)
            error = outcome.get("error") if outcome is not None else {"code": "unavailable"}
            if not error:
                done.append(item)
                continue
            code = error.get("code") if isinstance(error, dict) else None
            if code in TRANSIENT_CODES:
                retry.append((item, f"the recipient's node answered {code}"))
            else:
                failed.append((item, f"refused by the recipient's node: {code}"))
        await self._settle(done=done, retry=retry, failed=failed)

    async def _unreachable(self, batch: _Batch, payloads: list[dict[str, Any]], error: str) -> None:
        """The recipient's node did not answer: a relay takes what waited long enough.

        The deposit gives up this batch's delivery slot while it waits on relays
        (it takes one of the ``deposit_concurrency`` deposit slots instead), so
        relays that hang cannot use up the slots healthy peers are served from.
        """
        home = batch.user.home_node
        ready = [k for k, item in enumerate(batch.items) if self._may_relay(item, home)]
        placed: dict[int, str] = {}
        if ready and home is not None and self.relay is not None:
            if len(self._depositing) < self.deposit_concurrency:
                self._depositing.add(batch.destination)
                self.wake()  # a delivery slot is free again
                taken = await self.relay.deposit_batch(home, [payloads[k] for k in ready])
                placed = {k: relay_id for k, relay_id in zip(ready, taken, strict=True) if relay_id}
            else:
                log.info("every relay deposit slot is busy; %d envelopes for %s wait", len(ready), home)
        relayed: list[OutboxItem] = []
        retry: list[tuple[OutboxItem, str]] = []
        for k, item in enumerate(batch.items):
            if k in placed:
                log.info("deposited %s for %s at relay %s", item.envelope_id, item.recipient, placed[k])
                relayed.append(item)
            else:
                retry.append((item, error))
        await self._settle(done=relayed, retry=retry)

    def _may_relay(self, item: OutboxItem, home: str | None) -> bool:
        waited = (ms(self.clock) - item.created_at) / 1000
        return (
            self.relay is not None
            and home is not None
            and home != self.node_id
            and waited >= self.relay_after
        )

    async def _settle(
        self,
        *,
        done: Sequence[OutboxItem] = (),
        retry: Sequence[tuple[OutboxItem, str]] = (),
        failed: Sequence[tuple[OutboxItem, str]] = (),
    ) -> None:
        """Record a batch's results in one transaction, then tell the senders' pages."""
        now = ms(self.clock)
        async with self.db.write() as conn:
            await node_messages.remove_many(conn, [i.seq for i in done] + [i.seq for i, _e in failed])
            for item, error in retry:
                attempts = item.attempts + 1
                delay = backoff_delay(attempts, base=self.base_delay, cap=self.max_delay, rng=self.rng)
                log.info(
                    "delivery of %s to %s failed (%s); retry in %.1fs",
                    item.envelope_id,
                    item.recipient,
                    error,
                    delay,
                )
                await node_messages.reschedule(
                    conn, item.seq, attempts=attempts, next_attempt_at=now + int(delay * 1000), error=error
                )
        by_sender: dict[str, list[str]] = {}
        for item in done:
            by_sender.setdefault(item.sender, []).append(item.envelope_id)
        for sender, ids in by_sender.items():
            await self.messaging.set_states(sender, ids, "sent")
        for item, error in failed:
            log.warning("giving up on %s to %s: %s", item.envelope_id, item.recipient, error)
            await self.messaging.set_state(item.sender, item.envelope_id, "failed", error)


@dataclass
class _Batch:
    user: KnownUser
    destination: str
    items: list[OutboxItem] = field(default_factory=list)
    size: int = 0
