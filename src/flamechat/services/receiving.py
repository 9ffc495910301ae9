"""Receiving envelopes: from peer nodes, from relays, and from this node itself.

Check the envelope's origin (the sender's signature, and that the node
delivering it is the sender's home unless it came through a relay), then open
it if the recipient's keys are unlocked, or hold it sealed until they log in.
Either way it is on disk before the peer gets its 2xx, and a repeated id is a
no-op. Once a message is stored and opened, a delivery receipt (sealed,
signed by the recipient) is queued in the same transaction, through
``MessagingService.queue_receipt``; a receipt received moves the states of
the messages it names forward. Envelopes of other kinds (files) are stored
by the service registered for their kind (``register_kind``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from flamechat.crypto import OpenedEnvelope, SealedEnvelope, UserKeys, open_envelope, verify_envelope_origin
from flamechat.crypto.errors import CryptoError
from flamechat.protocol import errors
from flamechat.services.amends import AMEND_KIND
from flamechat.services.blocks import BlockService
from flamechat.services.clock import Clock, ms
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.messaging import (
    MAX_BODY_BYTES,
    MAX_RECEIPT_IDS,
    MessagingService,
    behind,
    message_view,
)
from flamechat.services.ratelimit import RateLimits
from flamechat.services.waiting import state_event
from flamechat.storage import node_accounts, node_messages
from flamechat.storage.database import Database
from flamechat.storage.records import KnownUser, MessageRecord

log = logging.getLogger(__name__)


class AmendHandler(Protocol):
    """What applies edits and deletions (``services/amends.py``) gives the receiving side."""

    async def received(self, conn: Any, opened: OpenedEnvelope, now: int) -> list[tuple[str, dict[str, Any]]]:
        """Apply an ``amend`` envelope in the receiving transaction; events to publish."""

    async def arrived(self, conn: Any, record: MessageRecord) -> MessageRecord | None:
        """A message was just stored: apply an amend that came before it (``None``:
        its recipient had deleted it for themselves, and it is taken out again)."""

    async def after_commit(self) -> None:
        """After the receiving transaction: what applying amends leaves to do (blobs)."""


class KindHandler(Protocol):
    """What a service that owns an envelope kind (files) gives the receiving side."""

    def history_text(self, opened: OpenedEnvelope) -> str | None:
        """The searchable text for the history row; ``None`` refuses the envelope."""

    async def stored(self, conn: Any, opened: OpenedEnvelope, now: int) -> None:
        """Write the kind's own rows, in the transaction that stores the message."""

    def after_commit(self, opened: OpenedEnvelope) -> None:
        """Called once the message is durable (wake a worker)."""


def _wire_id(wire: Any) -> str:
    value = wire.get("id") if isinstance(wire, dict) else None
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class Outcome:
    """What became of one envelope of a batch."""

    id: str
    status: Literal["stored", "duplicate", "refused"]
    error: errors.FlameError | None = None

    def to_wire(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.error is not None:
            answer["error"] = self.error.to_body()["error"]
        return answer


@dataclass(frozen=True)
class _Examined:
    """An envelope that passed every check; ``opened`` is None while its recipient is logged out."""

    envelope: SealedEnvelope | None
    wire: dict[str, Any]
    sender: KnownUser
    keys: UserKeys | None
    opened: OpenedEnvelope | None


@dataclass
class _BatchLookups:
    """Lookups shared by the envelopes of one batch (most share sender and recipient)."""

    hosted: dict[str, bool] = field(default_factory=dict)
    senders: dict[str, KnownUser] = field(default_factory=dict)


def check_received(opened: OpenedEnvelope) -> None:
    """A received envelope's content is held to what a sending node can produce:
    UTF-8 text (a lone surrogate, ``"\\ud800"`` in its JSON, could not be stored)
    and, for a message, at most 64 KiB of it."""
    try:
        json.dumps(opened.body, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise errors.EnvelopeRejected("the envelope's content is not valid UTF-8") from exc
    text = opened.body.get("text") if opened.kind in ("message", AMEND_KIND) else None
    if isinstance(text, str) and len(text.encode()) > MAX_BODY_BYTES:
        raise errors.MessageTooLarge(f"a message holds at most {MAX_BODY_BYTES} bytes of text", field="body")


def reply_target(opened: OpenedEnvelope) -> str | None:
    """The message a received message answers, if it names one as a sending node
    would (an id of at most 36 characters); anything else is ignored."""
    value = opened.body.get("reply_to") if opened.kind == "message" else None
    return value if isinstance(value, str) and 0 < len(value) <= 36 else None


class ReceivingService:
    def __init__(
        self,
        db: Database,
        directory: DirectoryView,
        keyring: KeyRing,
        events: EventHub,
        blocks: BlockService,
        clock: Clock,
        outgoing: MessagingService,
        limits: RateLimits | None = None,
    ) -> None:
        self.db = db
        self.directory = directory
        self.keyring = keyring
        self.events = events
        self.blocks = blocks
        self.clock = clock
        self.outgoing = outgoing  # queues the delivery receipts, wakes the delivery worker
        self._kinds: dict[str, KindHandler] = {}
        self._amends: AmendHandler | None = None
        self.limits = limits  # per-sender rates of what peers deliver (not what this node collects)

    def register_kind(self, kind: str, handler: KindHandler) -> None:
        """Let another service accept envelopes of ``kind`` (files)."""
        self._kinds[kind] = handler

    def register_amends(self, handler: AmendHandler) -> None:
        """Let the amend service apply ``amend`` envelopes (edits, deletions)."""
        self._amends = handler

    async def receive(
        self, from_node: str, wire: dict[str, Any], *, relayed: bool = False
    ) -> Literal["stored", "duplicate"]:
        """Accept one envelope from ``from_node`` (its home node, or a relay); raise if refused."""
        (outcome,) = await self.receive_batch(from_node, [wire], relayed=relayed)
        if outcome.error is not None:
            raise outcome.error
        return "duplicate" if outcome.status == "duplicate" else "stored"

    async def receive_batch(
        self, from_node: str, wires: list[dict[str, Any]], *, relayed: bool = False
    ) -> list[Outcome]:
        """Accept envelopes from ``from_node``, each checked on its own, stored together.

        Every envelope is verified (and opened, when its recipient's keys are
        unlocked) before anything is written; then everything accepted is
        stored, with one delivery receipt per sender and recipient, in one
        transaction. A refused envelope refuses only itself.
        """
        outcomes: list[Outcome] = [Outcome(_wire_id(w), "refused") for w in wires]
        ready: list[tuple[int, _Examined]] = []
        seen = _BatchLookups()
        for index, wire in enumerate(wires):
            try:
                examined = await self._examine(from_node, wire, relayed, seen)
            except errors.FlameError as exc:
                outcomes[index] = Outcome(outcomes[index].id, "refused", exc)
                continue
            if examined is None:  # dropped without a trace: to the sender it was stored
                outcomes[index] = Outcome(outcomes[index].id, "stored")
            else:
                ready.append((index, examined))
        if ready:
            await self._store(ready, outcomes)
        return outcomes

    async def open_live(self, from_node: str, wire: dict[str, Any]) -> OpenedEnvelope | None:
        """Check and open an envelope that is shown, never stored (a typing notice): the
        checks of a message, without counting against the sender's message budget.
        ``None`` when its recipient drops it, or is not signed in to see it."""
        examined = await self._examine(from_node, wire, False, _BatchLookups(), count=False)
        return None if examined is None else examined.opened

    async def _examine(
        self, from_node: str, wire: dict[str, Any], relayed: bool, seen: _BatchLookups, *, count: bool = True
    ) -> _Examined | None:
        """Check one envelope without writing anything; ``None`` if its recipient drops it."""
        try:
            envelope = SealedEnvelope.from_wire(wire)
        except CryptoError as exc:
            raise errors.InvalidRequest(str(exc), field="envelope") from exc
        if envelope.recipient not in seen.hosted:
            async with self.db.read() as conn:
                seen.hosted[envelope.recipient] = (
                    await node_accounts.get_account(conn, envelope.recipient) is not None
                )
        if not seen.hosted[envelope.recipient]:
            raise errors.UnknownUser(f"{envelope.recipient!r} does not live on this node")
        if await self.blocks.drops(envelope.recipient, envelope.sender):
            return None
        sender = seen.senders.get(envelope.sender)
        if sender is None:
            sender = await self.directory.resolve(envelope.sender, for_peer=from_node)
        sender = await self._check_origin(
            envelope, sender, None if relayed else from_node, for_peer=from_node
        )
        seen.senders[envelope.sender] = sender
        if self.limits is not None and not relayed and count:
            # A peer node is bound by nothing but its request rate: hold each of its
            # users to a few times what a node lets them send (messages and bytes),
            # or one hostile node fills this node's disk at the speed of its network.
            await self.limits.hit("incoming", envelope.sender)
            await self.limits.hit("incoming-bytes", envelope.sender, cost=len(envelope.ciphertext))
        if await self.blocks.node_blocked(sender.home_node):
            # The operator blocked the sender's node: its own requests are refused,
            # and what it routes through a relay is dropped here.
            return None
        keys = self.keyring.get(envelope.recipient)
        if keys is None:
            return _Examined(envelope, wire, sender, None, None)
        assert sender.sign_key is not None
        try:
            opened = open_envelope(envelope, recipient_keys=keys, sender_sign_key=sender.sign_key)
        except CryptoError as exc:
            raise errors.EnvelopeRejected(f"envelope does not open: {exc}") from exc
        check_received(opened)
        return _Examined(envelope, wire, sender, keys, opened)

    async def _store(self, ready: list[tuple[int, _Examined]], outcomes: list[Outcome]) -> None:
        now = ms(self.clock)
        events: list[tuple[str, dict[str, Any]]] = []
        after: list[tuple[KindHandler, OpenedEnvelope]] = []
        held_for: set[str] = set()
        to_receipt: dict[tuple[str, str], tuple[UserKeys, KnownUser, list[str]]] = {}
        async with self.db.write() as conn:
            for index, item in ready:
                envelope, opened = item.envelope, item.opened
                if opened is None:  # the recipient is logged out: keep it sealed until they log in
                    assert envelope is not None
                    stored = not await node_messages.find_message(conn, envelope.recipient, envelope.id)
                    stored = stored and await node_messages.hold(
                        conn,
                        recipient=envelope.recipient,
                        envelope_id=envelope.id,
                        sender=envelope.sender,
                        payload=json.dumps(item.wire),
                        now=now,
                    )
                    held_for.add(envelope.recipient)
                elif opened.kind == "receipt":
                    events += await self._apply_receipt(conn, opened)
                    stored = True
                elif opened.kind == AMEND_KIND and self._amends is not None:
                    events += await self._amends.received(conn, opened, now)
                    stored = True
                else:
                    record = await self._store_opened(conn, opened, now, after)
                    stored = record is not None
                    if record is not None:
                        quoted = await node_messages.find_messages(
                            conn, record.owner, [record.reply_to] if record.reply_to else []
                        )
                        events.append(
                            (opened.recipient, {"type": "message", "message": message_view(record, quoted)})
                        )
                        if item.sender.box_key is not None and item.keys is not None:
                            key = (opened.recipient, opened.sender)
                            to_receipt.setdefault(key, (item.keys, item.sender, []))[2].append(opened.id)
                outcomes[index] = Outcome(outcomes[index].id, "stored" if stored else "duplicate")
            for (recipient, _sender), (keys, sender, ids) in to_receipt.items():
                for start in range(0, len(ids), MAX_RECEIPT_IDS):
                    chunk = ids[start : start + MAX_RECEIPT_IDS]
                    await self.outgoing.queue_receipt(conn, keys, recipient, sender, "delivered", chunk, now)
        for handler, opened in after:
            handler.after_commit(opened)
        if self._amends is not None:
            await self._amends.after_commit()
        for owner, event in events:
            self.events.publish(owner, event)
        if to_receipt:
            self.outgoing.wake()
        for username in held_for:
            if self.keyring.get(username) is not None:
                # The keys were unlocked while we held it, after the unlock opened
                # what was held then: open it now rather than at the next login.
                await self.open_held(username)

    async def _store_opened(
        self, conn: Any, opened: OpenedEnvelope, now: int, after: list[tuple[KindHandler, OpenedEnvelope]]
    ) -> MessageRecord | None:
        """Store a message (or file) envelope; ``None`` if it was here already or is not one."""
        handler = self._kinds.get(opened.kind)
        text = opened.body.get("text") if opened.kind == "message" else None
        if handler is not None:
            text = handler.history_text(opened)
        if not isinstance(text, str):
            log.info("ignoring envelope %s of kind %s", opened.id, opened.kind)
            return None
        record = await node_messages.add_message(
            conn,
            owner=opened.recipient,
            peer=opened.sender,
            message_id=opened.id,
            direction="in",
            sender=opened.sender,
            recipient=opened.recipient,
            body=text,
            sent_at=opened.sent_at,
            state="delivered",
            now=now,
            kind="text" if opened.kind == "message" else opened.kind,
            reply_to=reply_target(opened),
        )
        if record is not None and handler is not None:
            await handler.stored(conn, opened, now)
            after.append((handler, opened))
        if record is not None and self._amends is not None:
            record = await self._amends.arrived(conn, record)
        return record

    async def _check_origin(
        self,
        envelope: SealedEnvelope,
        sender: KnownUser,
        from_node: str | None = None,
        *,
        for_peer: str | None = None,
    ) -> KnownUser:
        """Check the sender's outer signature and (unless relayed) that ``from_node``
        is the sender's home; a cached record that fails is refreshed once, since
        the sender may have moved or rotated keys since it was cached (within
        ``for_peer``'s lookup budget: a forgery must not cost a directory call)."""
        for attempt in range(2):
            home_ok = from_node is None or sender.home_node == from_node
            if home_ok and sender.sign_key is not None:
                try:
                    verify_envelope_origin(envelope, sender.sign_key)
                    return sender
                except CryptoError:
                    pass
            if attempt == 0:
                # The cached keys or home do not fit: ask the directory whether they
                # changed. If it cannot say (unreachable: the cache comes back), the
                # refusal is transient, so the sender's node retries once the directory
                # is back instead of failing a message that may well be genuine.
                unanswered = errors.DirectoryUnavailable(
                    f"cannot check {envelope.sender}'s current keys while the directory is unreachable"
                )
                try:
                    fresh = await self.directory.resolve(envelope.sender, max_age=0, for_peer=for_peer)
                except errors.DirectoryUnavailable:
                    fresh = sender
                if fresh.fetched_at == sender.fetched_at and home_ok:
                    raise unanswered
                sender = fresh
        if from_node is not None and sender.home_node != from_node:
            raise errors.Forbidden(f"node {from_node} may not deliver for {envelope.sender}")
        raise errors.EnvelopeRejected("the sender's signature does not verify")

    async def _accept(self, opened: OpenedEnvelope, keys: UserKeys, sender: KnownUser) -> bool:
        """Store one opened envelope (a held one, opened at login)."""
        outcomes = [Outcome(opened.id, "refused")]
        await self._store([(0, _Examined(None, {}, sender, keys, opened))], outcomes)
        return outcomes[0].status == "stored"

    async def _apply_receipt(self, conn: Any, opened: OpenedEnvelope) -> list[tuple[str, dict[str, Any]]]:
        """Move the receipted messages' states forward (in the caller's transaction)."""
        status = opened.body.get("status")
        ids = opened.body.get("message_ids")
        if status not in ("delivered", "read") or not isinstance(ids, list):
            log.info("ignoring malformed receipt %s", opened.id)
            return []
        wanted = [i for i in ids[:MAX_RECEIPT_IDS] if isinstance(i, str)]
        # Only the message's recipient can vouch for it: outgoing messages to the receipt's sender.
        changed = await node_messages.advance_states(
            conn, opened.recipient, wanted, str(status), behind(str(status)), peer=opened.sender
        )
        return [(opened.recipient, state_event(record)) for record in changed]

    async def open_held(self, username: str) -> int:
        """Open the envelopes that arrived while ``username`` was logged out."""
        keys = self.keyring.get(username)
        if keys is None:
            return 0
        opened_count = 0
        while True:
            async with self.db.read() as conn:
                batch = await node_messages.held_for(conn, username, 100)
            if not batch:
                return opened_count
            for item in batch:
                try:
                    envelope = SealedEnvelope.from_wire(json.loads(item.payload))
                    if await self.blocks.drops(username, envelope.sender):
                        raise errors.Forbidden(f"{envelope.sender} is blocked")
                    sender = await self.directory.resolve(envelope.sender)
                    sender = await self._check_origin(envelope, sender)
                    if await self.blocks.node_blocked(sender.home_node):
                        raise errors.Forbidden(f"{envelope.sender}'s node is blocked")
                    assert sender.sign_key is not None
                    opened = open_envelope(envelope, recipient_keys=keys, sender_sign_key=sender.sign_key)
                    check_received(opened)
                    opened_count += await self._accept(opened, keys, sender)
                except (errors.DirectoryUnavailable, errors.ServiceUnavailable):
                    return opened_count  # transient (directory, storage): keep it held; try again later
                except (CryptoError, errors.FlameError, ValueError) as exc:
                    log.warning("dropping held envelope %s: %s", item.envelope_id, exc)
                async with self.db.write() as conn:
                    await node_messages.release(conn, item.seq)
