"""Relays: holding sealed envelopes for an unreachable node, and using relays.

Three roles, one service:

* **relay** — another node deposits an envelope for a user of a third node.
  The relay checks the sender's signature (so it stores nothing forged) but
  cannot read the content. Storage is bounded per recipient and per
  depositing node (envelopes and bytes; expired ones do not count), and
  expires.
* **depositor** — when a recipient's node stays unreachable past
  ``relay_after``, the outbox worker hands the envelopes to a relay, a batch
  at a time. Relays are tried in rendezvous-hash order for the recipient's
  node, so deposits for one node tend to land on the same relay. A relay
  that fails is left for the rest of the batch, and one that is unreachable,
  hangs or errs is skipped for a while (a circuit breaker) rather than tried
  again for every envelope.
* **collector** — a node asks every relay for its users' envelopes at
  start-up, periodically and when a user logs in, stores them like direct
  deliveries (idempotent by id), then acknowledges them so the relay
  deletes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from typing import Any

from flamechat.crypto import SealedEnvelope, verify_envelope_origin
from flamechat.crypto.errors import CryptoError
from flamechat.protocol import errors
from flamechat.services.breaker import Breaker
from flamechat.services.clock import Clock, ms
from flamechat.services.directory_view import DirectoryView
from flamechat.services.ports import PeerPort, TransportError
from flamechat.services.receiving import ReceivingService
from flamechat.storage import node_relay
from flamechat.storage.database import Database
from flamechat.storage.records import KnownNode, RelayedEnvelope

log = logging.getLogger(__name__)

COLLECT_BATCH = 100
RELAYS_RECHECK = 5.0
MAX_COLLECT_ROUNDS = 1000


class RelayQuotaExceeded(errors.FlameError):
    """The relay holds as much as it will for this recipient or depositor."""

    status = 507
    code = "relay_quota_exceeded"


class RelayDisabled(errors.Forbidden):
    code = "relay_disabled"


def relay_at_fault(exc: TransportError) -> bool:
    """Is the failure the relay's (down, hanging, erring, refusing all), not one envelope's?"""
    if exc.code == RelayQuotaExceeded.code:
        return False  # full for one recipient; others may still fit
    return exc.transient or exc.code == RelayDisabled.code


def rendezvous_order(relays: list[KnownNode], key: str) -> list[KnownNode]:
    """Highest-random-weight order of ``relays`` for ``key`` (stable, spread)."""
    return sorted(relays, key=lambda n: hashlib.sha256(f"{key}|{n.node_id}".encode()).digest(), reverse=True)


class RelayService:
    def __init__(
        self,
        db: Database,
        directory: DirectoryView,
        peers: PeerPort,
        receiving: ReceivingService,
        clock: Clock,
        *,
        node_id: str,
        offer: bool = True,
        max_per_recipient: int = 10_000,
        max_per_depositor: int = 100_000,
        max_bytes_per_depositor: int = 1024**3,
        ttl: float = 14 * 24 * 3600,
        collect_interval: float = 30.0,
        breaker_base: float = 5.0,
        breaker_max: float = 300.0,
    ) -> None:
        self.db = db
        self.directory = directory
        self.peers = peers
        self.receiving = receiving
        self.clock = clock
        self.node_id = node_id
        self.offer = offer
        self.max_per_recipient = max_per_recipient
        self.max_per_depositor = max_per_depositor
        self.max_bytes_per_depositor = max_bytes_per_depositor
        self.ttl = ttl
        self.collect_interval = collect_interval
        self.breaker = Breaker(clock, base=breaker_base, cap=breaker_max)
        self._collect_now = asyncio.Event()

    # --- as a relay ------------------------------------------------------------------

    async def accept(self, depositor: str, recipient_node: str, wire: dict[str, Any]) -> str:
        if not self.offer:
            raise RelayDisabled("this node does not offer relaying")
        if recipient_node == self.node_id:
            raise errors.InvalidRequest("deliver to this node directly", field="recipient_node")
        try:
            envelope = SealedEnvelope.from_wire(wire)
        except CryptoError as exc:
            raise errors.InvalidRequest(str(exc), field="envelope") from exc
        sender = await self.directory.resolve(envelope.sender, for_peer=depositor)
        if sender.sign_key is None:
            raise errors.EnvelopeRejected(f"{envelope.sender} has no published key")
        try:
            verify_envelope_origin(envelope, sender.sign_key)
        except CryptoError as exc:
            raise errors.EnvelopeRejected("the sender's signature does not verify") from exc
        recipient = await self.directory.resolve(envelope.recipient, for_peer=depositor)
        if recipient.home_node != recipient_node:
            raise errors.InvalidRequest(
                f"{envelope.recipient} does not live on {recipient_node}", field="recipient_node"
            )
        now = ms(self.clock)
        async with self.db.write() as conn:
            if await node_relay.holds(conn, envelope.id, envelope.recipient):
                return "duplicate"
            held = await node_relay.counts(conn, recipient=envelope.recipient, depositor=depositor, now=now)
            payload = json.dumps(wire)
            if (
                held.for_recipient >= self.max_per_recipient
                or held.from_depositor >= self.max_per_depositor
                or held.bytes_from_depositor + len(payload) > self.max_bytes_per_depositor
            ):
                raise RelayQuotaExceeded("this relay is full for that recipient or depositor")
            await node_relay.deposit(
                conn,
                envelope_id=envelope.id,
                recipient=envelope.recipient,
                recipient_node=recipient_node,
                depositor=depositor,
                payload=payload,
                now=now,
                expires_at=now + int(self.ttl * 1000),
            )
        return "stored"

    async def pending(self, recipient_node: str, limit: int) -> list[RelayedEnvelope]:
        async with self.db.read() as conn:
            return await node_relay.pending_for(conn, recipient_node, ms(self.clock), limit)

    async def acknowledge(self, recipient_node: str, seqs: list[int]) -> int:
        async with self.db.write() as conn:
            return await node_relay.acknowledge(conn, recipient_node, seqs)

    # --- as a depositor ----------------------------------------------------------------

    async def deposit(self, recipient_node: str, wire: dict[str, Any]) -> str | None:
        """Hand ``wire`` to the first relay that takes it; its node id, or None."""
        return (await self.deposit_batch(recipient_node, [wire]))[0]

    async def deposit_batch(self, recipient_node: str, wires: list[dict[str, Any]]) -> list[str | None]:
        """Hand ``wires`` to relays, in order; for each, the relay that took it, or None.

        Each relay takes what it can from the first envelope not yet placed; at
        its first failure the rest go to the next relay, so the envelopes placed
        are always a prefix (a pair's order is kept). Relays whose breaker is
        open are skipped. If the known relays do not take everything, the relay
        list is fetched again (at most every ``RELAYS_RECHECK`` seconds): relays
        that registered since the list was cached are tried too.
        """
        placed: list[str | None] = [None] * len(wires)
        start = 0
        tried: set[str] = {self.node_id, recipient_node}
        for max_age in (None, RELAYS_RECHECK):
            relays = [r for r in await self.directory.relays(max_age=max_age) if r.node_id not in tried]
            for relay in rendezvous_order(relays, recipient_node):
                tried.add(relay.node_id)
                if not self.breaker.allow(relay.node_id):
                    log.debug("relay %s failed recently; not trying it yet", relay.node_id)
                    continue
                start = await self._deposit_at(relay, recipient_node, wires, placed, start)
                if start == len(wires):
                    return placed
        return placed

    async def _deposit_at(
        self,
        relay: KnownNode,
        recipient_node: str,
        wires: list[dict[str, Any]],
        placed: list[str | None],
        start: int,
    ) -> int:
        """Deposit ``wires[start:]`` at ``relay`` until its first failure; the first not placed."""
        try:
            for index in range(start, len(wires)):
                try:
                    await self.peers.deposit(relay.url, recipient_node, wires[index])
                except TransportError as exc:
                    if relay_at_fault(exc):
                        self.breaker.failed(relay.node_id)
                    else:
                        self.breaker.succeeded(relay.node_id)  # it answered: it is up
                    log.info("relay %s refused or unreachable: %s", relay.node_id, exc)
                    return index
                self.breaker.succeeded(relay.node_id)
                placed[index] = relay.node_id
        except BaseException:
            self.breaker.abandoned(relay.node_id)
            raise
        return len(wires)

    # --- as a collector ------------------------------------------------------------------

    def collect_soon(self) -> None:
        self._collect_now.set()

    async def collect(self) -> int:
        """Fetch, store and acknowledge this node's envelopes from every relay."""
        relays = [r for r in await self.directory.relays() if r.node_id != self.node_id]
        results = await asyncio.gather(*(self._collect_from(r) for r in relays), return_exceptions=True)
        total = 0
        for relay, result in zip(relays, results, strict=True):
            if isinstance(result, BaseException):
                log.debug("collecting from relay %s failed: %s", relay.node_id, result)
            else:
                total += result
        return total

    async def _collect_from(self, relay: KnownNode) -> int:
        stored = 0
        for _ in range(MAX_COLLECT_ROUNDS):
            answer = await self.peers.fetch_relayed(relay.url, COLLECT_BATCH)
            items = answer.get("envelopes", [])
            if not items:
                break
            done: list[int] = []
            outcomes = await self.receiving.receive_batch(
                relay.node_id, [item["envelope"] for item in items], relayed=True
            )
            for item, outcome in zip(items, outcomes, strict=True):
                if isinstance(outcome.error, errors.DirectoryUnavailable):
                    break  # cannot check it now; leave it (and the rest) at the relay
                if outcome.error is not None:
                    log.warning("dropping relayed envelope from %s: %s", relay.node_id, outcome.error.message)
                stored += outcome.status == "stored"
                done.append(int(item["seq"]))
            if done:
                await self.peers.ack_relayed(relay.url, done)
            if len(done) < len(items):
                break
        return stored

    async def run(self) -> None:
        """Collect at start, every ``collect_interval`` and on demand; purge expired."""
        while True:
            try:
                count = await self.collect()
                if count:
                    log.info("collected %d envelopes from relays", count)
                async with self.db.write() as conn:
                    await node_relay.purge_expired(conn, ms(self.clock))
            except Exception:
                log.exception("relay collection round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._collect_now.wait(), timeout=self.collect_interval)
            self._collect_now.clear()
