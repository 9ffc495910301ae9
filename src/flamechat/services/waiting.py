"""Messages to someone who has not signed in yet: held on the sender's node, then sent.

A user an administrator just created has no keys until their first login
on their home node, so nothing can be sealed to them. A message (or file)
written to them is stored in the sender's history in state ``waiting``, and
its envelope kind and body in ``waiting_sends``, on the sender's own node.

Release: once the recipient's keys are known and the sender's keys are
unlocked, each waiting message is sealed with its original id and sent_at
and, in one transaction, its row leaves ``waiting_sends``, its envelope goes
into the outbox (in the order the messages were written) and it moves to
``pending``; the sender's tabs are told and the delivery worker is woken.
While a pair (sender, recipient) has messages waiting, a new message between
them waits too, so it cannot overtake them.

What notices the keys: ``run`` checks every ``interval`` seconds while
anything waits, reading the node's directory cache (which the presence loop
refreshes from the directory's user list) and asking the directory itself
for a waiting recipient every ``ask_every`` seconds, or every ``interval``
while they show as online (they just signed in). A login on this node wakes
it at once (``wake``).

Expiry: a message that waited ``ttl`` seconds (the outbox's) fails with
"<name> never signed in"; one to an account closed meanwhile fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from flamechat.crypto import SealedEnvelope, seal_envelope
from flamechat.protocol import errors
from flamechat.services.clock import Clock, ms
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.storage import node_cache, node_messages, node_waiting
from flamechat.storage.database import Database
from flamechat.storage.records import KnownUser, MessageRecord, WaitingSend

log = logging.getLogger(__name__)

RELEASE_BATCH = 200  # messages sealed and moved to the outbox per transaction

Pair = tuple[str, str]  # (sender, recipient)


def state_event(record: MessageRecord) -> dict[str, Any]:
    return {
        "type": "message_state",
        "id": record.id,
        "conversation": record.peer,
        "state": record.state,
        "error": record.error,
    }


async def enqueue_sealed(conn: Any, envelope: SealedEnvelope, now: int, ttl: float) -> None:
    """The outbox row that carries ``envelope`` until its recipient's node has it
    (or ``ttl`` seconds have passed)."""
    await node_messages.enqueue(
        conn,
        envelope_id=envelope.id,
        sender=envelope.sender,
        recipient=envelope.recipient,
        payload=json.dumps(envelope.to_wire()),
        now=now,
        expires_at=now + int(ttl * 1000),
    )


def has_keys(user: KnownUser | None) -> bool:
    """Whether anything can be sealed to ``user`` yet (they signed in once)."""
    return user is not None and user.sign_key is not None and user.box_key is not None


def never_signed_in(peer: str) -> str:
    return f"{peer} never signed in, so this was not sent"


def account_closed(peer: str) -> str:
    return f"{peer}'s account was closed before they signed in, so this was not sent"


class WaitingSends:
    def __init__(
        self,
        db: Database,
        directory: DirectoryView,
        keyring: KeyRing,
        events: EventHub,
        clock: Clock,
        *,
        ttl: float = 7 * 24 * 3600,
        interval: float = 2.0,
        ask_every: float = 30.0,
    ) -> None:
        self.db = db
        self.directory = directory
        self.keyring = keyring
        self.events = events
        self.clock = clock
        self.ttl = ttl
        self.interval = interval
        self.ask_every = ask_every
        self._queued: Callable[[], None] = lambda: None
        self._wake = asyncio.Event()
        # Every pair with messages waiting: seeded from the table, kept by hold and
        # release, and read again at every check (so it cannot drift for long).
        self._pairs: set[Pair] = set()
        self._holding: Counter[Pair] = Counter()  # holds in progress, not yet committed
        self._loaded = False
        self._lock = asyncio.Lock()  # a hold's write against a release's last look at a pair
        self._asked: dict[str, float] = {}  # recipient -> when the directory was last asked

    def on_queued(self, wake: Callable[[], None]) -> None:
        """Called after released envelopes are put in the outbox (wakes the delivery worker)."""
        self._queued = wake

    def wake(self) -> None:
        """Look now (a login on this node: a recipient's first keys, or a sender's keys unlocked)."""
        self._wake.set()

    @property
    def lock(self) -> asyncio.Lock:
        """Held while waiting messages are sealed and taken: whoever changes one in
        place (an edit, a deletion) holds it too, so a change cannot be lost to a seal."""
        return self._lock

    def holds(self, owner: str, peer: str) -> bool:
        """Whether ``owner`` has messages waiting for ``peer`` (a new one must wait behind them)."""
        return (owner, peer) in self._pairs

    async def load(self) -> None:
        """Learn which pairs have messages waiting (once; the send path calls it)."""
        if not self._loaded:
            await self._reload()
            self._loaded = True

    # --- holding ----------------------------------------------------------------------

    async def hold(
        self,
        *,
        owner: str,
        peer: str,
        message_id: str,
        kind: str,
        body: dict[str, Any],
        history_text: str,
        history_kind: str,
        sent_at: int,
        also: Callable[[Any, int], Awaitable[None]] | None = None,
        reply_to: str | None = None,
    ) -> MessageRecord | None:
        """Store the history row (state ``waiting``), whatever ``also(conn, sent_at)``
        writes, and the unsealed body, in one transaction; ``None`` if a message
        with this id is stored already."""
        pair = (owner, peer)
        self._holding[pair] += 1
        self._pairs.add(pair)  # from now on, a new message between them waits too
        try:
            async with self._lock, self.db.write() as conn:
                record = await node_messages.add_outgoing(
                    conn,
                    owner=owner,
                    peer=peer,
                    message_id=message_id,
                    body=history_text,
                    sent_at=sent_at,
                    state="waiting",
                    kind=history_kind,
                    reply_to=reply_to,
                )
                if record is None:
                    return None
                if also is not None:
                    await also(conn, sent_at)
                now = ms(self.clock)
                await node_waiting.add(
                    conn,
                    owner=owner,
                    peer=peer,
                    message_id=message_id,
                    kind=kind,
                    body=json.dumps(body),
                    sent_at=sent_at,
                    now=now,
                    expires_at=now + int(self.ttl * 1000),
                )
        finally:
            self._holding[pair] -= 1
            if self._holding[pair] <= 0:
                del self._holding[pair]
        self._asked.setdefault(peer, self.clock.now())  # the send just asked the directory
        self.wake()  # look now (the recipient may have keys already), then every few seconds
        return record

    # --- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Check every ``interval`` seconds while anything waits, and when woken."""
        while True:
            try:
                await self.check()
            except Exception:  # keep the loop alive; the error is in the log
                log.exception("waiting messages round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval if self._pairs else None)
            self._wake.clear()

    async def check(self) -> None:
        """One round: fail what waited too long, release what can go now."""
        soonest = await self._reload()
        self._loaded = True
        if soonest is not None and soonest <= ms(self.clock):
            await self._expire()
            await self._reload()
        if not self._pairs:
            return
        senders: dict[str, set[str]] = defaultdict(set)
        for owner, peer in self._pairs:
            senders[peer].add(owner)
        async with self.db.read() as conn:
            cached = {u.username: u for u in await node_cache.get_users(conn, senders)}
        self._asked = {peer: at for peer, at in self._asked.items() if peer in senders}  # bounded
        for peer, owners in sorted(senders.items()):
            user = cached.get(peer)
            if not has_keys(user):
                user = await self._ask(peer, user)
            if user is not None and has_keys(user):
                for owner in sorted(owners):
                    await self._release(owner, peer, user)

    async def _reload(self) -> int | None:
        """Read the waiting pairs again; answer when the first waiting message expires."""
        async with self._lock:
            async with self.db.read() as conn:
                found = await node_waiting.pairs(conn)
                soonest = await node_waiting.next_expiry(conn)
            self._pairs = found | set(self._holding)
        return soonest

    async def _ask(self, peer: str, cached: KnownUser | None) -> KnownUser | None:
        """The directory's record of ``peer``, if it is time to ask again; a closed
        account fails every message waiting for them."""
        now = self.clock.now()
        gap = self.interval if cached is not None and cached.online else self.ask_every
        if now - self._asked.get(peer, float("-inf")) < gap:
            return None
        self._asked[peer] = now
        try:
            return await self.directory.resolve(peer, max_age=0)
        except errors.UnknownUser:
            async with self.db.write() as conn:
                gone = await node_waiting.take_for_peer(conn, peer)
                changed = await self._fail(conn, gone, account_closed)
            self._publish(changed)
            for owner in {row.owner for row in gone}:
                self._pairs.discard((owner, peer))
            return None
        except errors.FlameError as exc:  # unreachable, busy: ask again next time
            log.info("could not ask the directory about %s: %s", peer, exc.message)
            return None

    async def _expire(self) -> None:
        async with self.db.write() as conn:
            gone = await node_waiting.take_expired(conn, ms(self.clock))
            changed = await self._fail(conn, gone, never_signed_in)
        for row in gone:
            log.info(
                "message %s from %s waited too long for %s to sign in", row.message_id, row.owner, row.peer
            )
        self._publish(changed)

    @staticmethod
    async def _fail(
        conn: Any, rows: Iterable[WaitingSend], reason: Callable[[str], str]
    ) -> list[MessageRecord]:
        by_pair: dict[Pair, list[str]] = defaultdict(list)
        for row in rows:
            by_pair[(row.owner, row.peer)].append(row.message_id)
        changed: list[MessageRecord] = []
        for (owner, peer), ids in by_pair.items():
            changed += await node_messages.advance_states(
                conn, owner, ids, "failed", ("waiting",), error=reason(peer)
            )
        return changed

    async def _release(self, owner: str, peer: str, recipient: KnownUser) -> None:
        """Seal and queue everything ``owner`` wrote to ``peer`` that waits, oldest first."""
        keys = self.keyring.get(owner)
        if keys is None:
            return  # sealed once the sender's keys are unlocked again (their next request or login)
        assert recipient.box_key is not None
        pair = (owner, peer)
        async with self._lock:
            while True:
                async with self.db.read() as conn:
                    rows = await node_waiting.for_pair(conn, owner, peer, RELEASE_BATCH)
                if not rows:
                    if not self._holding.get(pair):
                        self._pairs.discard(pair)
                    return
                sealed = [
                    seal_envelope(
                        sender_keys=keys,
                        sender=owner,
                        recipient=peer,
                        recipient_box_key=recipient.box_key,
                        envelope_id=row.message_id,
                        sent_at=row.sent_at,
                        kind=row.kind,
                        body=json.loads(row.body),
                    )
                    for row in rows
                ]
                now = ms(self.clock)
                async with self.db.write() as conn:
                    taken = await node_waiting.take(conn, owner, [row.message_id for row in rows])
                    for envelope in sealed:
                        if envelope.id in taken:
                            await enqueue_sealed(conn, envelope, now, self.ttl)
                    changed = await node_messages.advance_states(
                        conn, owner, [e.id for e in sealed if e.id in taken], "pending", ("waiting",)
                    )
                log.info("%s signed in: %d messages from %s sealed and queued", peer, len(taken), owner)
                self._publish(changed)
                self._queued()

    def _publish(self, changed: list[MessageRecord]) -> None:
        for record in changed:
            self.events.publish(record.owner, state_event(record))
