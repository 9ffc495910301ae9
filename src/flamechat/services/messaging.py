"""Sending, receiving and reading messages, and the receipts that follow them.

Send: seal (sign as the sender, encrypt to the recipient), then store the
history row and the outbox entry in one transaction before answering. To
someone who has not signed in yet (no keys to seal to) the message waits,
unsealed, on this node until they have keys (``services/waiting.py``).
Receive: check the envelope's origin, then open it if the recipient's keys
are unlocked, or hold it sealed until they log in. Either way it is on disk
before the peer gets its 2xx, and a repeated id is a no-op.
Receipts: once a message is stored and opened, the recipient's node queues a
delivery receipt (sealed, signed by the recipient) in the same transaction;
reading queues a read receipt. Receipt ids are derived from their content,
so a receipt sent twice is the same receipt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from flamechat.crypto import (
    OpenedEnvelope,
    SealedEnvelope,
    UserKeys,
    open_envelope,
    seal_envelope,
    verify_envelope_origin,
)
from flamechat.crypto.errors import CryptoError
from flamechat.crypto.safety import safety_number
from flamechat.protocol import errors
from flamechat.protocol.ids import new_id
from flamechat.services.blocks import BlockService
from flamechat.services.clock import Clock, ms
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.ratelimit import RateLimits
from flamechat.services.waiting import WaitingSends, has_keys
from flamechat.storage import node_accounts, node_messages
from flamechat.storage.database import Database
from flamechat.storage.records import KnownUser, MessageRecord

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
PAGE_LIMIT = 200
MAX_RECEIPT_IDS = 500
STATE_RANK = {"failed": -1, "waiting": 0, "pending": 1, "sent": 2, "delivered": 3, "read": 4}
_RECEIPT_NAMESPACE = uuid.UUID("5b0c1f7e-6a36-4e0b-9a43-9d3c1c6f2f10")


class KindHandler(Protocol):
    """What a service that owns an envelope kind (files) gives messaging."""

    def history_text(self, opened: OpenedEnvelope) -> str | None:
        """The searchable text for the history row; ``None`` refuses the envelope."""

    async def stored(self, conn: Any, opened: OpenedEnvelope, now: int) -> None:
        """Write the kind's own rows, in the transaction that stores the message."""

    def after_commit(self, opened: OpenedEnvelope) -> None:
        """Called once the message is durable (wake a worker)."""


def behind(state: str) -> tuple[str, ...]:
    """The states a message may move to ``state`` from: only forwards; "failed" from any
    state short of delivered (a refusal after a relay took it cannot undo "sent")."""
    if state == "failed":
        return ("waiting", "pending", "sent")
    return tuple(s for s, rank in STATE_RANK.items() if rank < STATE_RANK[state])


def _state_event(record: MessageRecord) -> dict[str, Any]:
    return {
        "type": "message_state",
        "id": record.id,
        "conversation": record.peer,
        "state": record.state,
        "error": record.error,
    }


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


class AlreadyStored(Exception):
    """A message with this id is stored already (a retried send); send() answers it."""


class UserBlocked(errors.Conflict):
    code = "user_blocked"


def message_view(record: MessageRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "seq": record.seq,
        "conversation": record.peer,
        "sender": record.sender,
        "recipient": record.recipient,
        "body": record.body,
        "sent_at": record.sent_at,
        "state": record.state,
        "direction": record.direction,
        "error": record.error,
        "kind": record.kind,
    }


def check_received(opened: OpenedEnvelope) -> None:
    """A received envelope's content is held to what a sending node can produce:
    UTF-8 text (a lone surrogate, ``"\\ud800"`` in its JSON, could not be stored)
    and, for a message, at most 64 KiB of it."""
    try:
        json.dumps(opened.body, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise errors.EnvelopeRejected("the envelope's content is not valid UTF-8") from exc
    text = opened.body.get("text") if opened.kind == "message" else None
    if isinstance(text, str) and len(text.encode()) > MAX_BODY_BYTES:
        raise errors.MessageTooLarge(f"a message holds at most {MAX_BODY_BYTES} bytes of text", field="body")


def encode_cursor(record: MessageRecord) -> str:
    return f"{record.sent_at}.{record.seq}"


def decode_cursor(cursor: str | None) -> tuple[int, int] | None:
    if cursor is None:
        return None
    sent_at, _, seq = cursor.partition(".")
    if not (sent_at.isascii() and sent_at.isdigit() and seq.isascii() and seq.isdigit()):  # "²" isdigit
        raise errors.InvalidRequest("before: not a cursor from next_cursor", field="before")
    return int(sent_at), int(seq)


def receipt_id(status: str, sender: str, message_ids: list[str]) -> str:
    """Content-derived id: the same receipt always has the same id."""
    return str(uuid.uuid5(_RECEIPT_NAMESPACE, f"{status}:{sender}:{','.join(sorted(message_ids))}"))


class MessagingService:
    def __init__(
        self,
        db: Database,
        directory: DirectoryView,
        keyring: KeyRing,
        events: EventHub,
        blocks: BlockService,
        limits: RateLimits,
        clock: Clock,
        *,
        node_id: str,
        outbox_ttl: float = 7 * 24 * 3600,
        waiting: WaitingSends | None = None,
    ) -> None:
        self.db = db
        self.blocks = blocks
        self.limits = limits
        self.directory = directory
        self.keyring = keyring
        self.events = events
        self.clock = clock
        self.node_id = node_id
        self.outbox_ttl = outbox_ttl
        self._wake: Callable[[], None] = lambda: None
        self._kinds: dict[str, KindHandler] = {}
        self._last_sent: dict[tuple[str, str], int] = {}
        self.waiting = waiting or WaitingSends(db, directory, keyring, events, clock, ttl=outbox_ttl)

    def on_queued(self, wake: Callable[[], None]) -> None:
        """Called after something is put in the outbox (wakes the delivery worker)."""
        self._wake = wake
        self.waiting.on_queued(wake)

    # --- sending --------------------------------------------------------------------

    async def send(self, username: str, peer: str, text: str, message_id: str | None = None) -> MessageRecord:
        if len(text.encode()) > MAX_BODY_BYTES:
            raise errors.MessageTooLarge(
                f"a message holds at most {MAX_BODY_BYTES} bytes of text", field="body"
            )
        if not text.strip():
            raise errors.InvalidRequest("the message is empty", field="body")
        message_id = message_id or new_id()
        recipient = await self.check_may_send(username, peer)
        await self.limits.hit("bytes", username, cost=max(1, len(text.encode())))
        try:
            return await self.send_sealed(
                username, peer, message_id, "message", {"text": text}, text, recipient=recipient
            )
        except AlreadyStored:
            async with self.db.read() as conn:
                existing = await node_messages.find_message(conn, username, message_id)
            if existing is None or existing.peer != peer or existing.body != text:
                raise errors.Conflict("this message id is already used", field="id") from None
            if existing.state == "failed" and existing.direction == "out" and existing.kind == "text":
                return await self._resend(username, existing, recipient)
            return existing  # the browser retried: same answer, nothing duplicated

    async def _resend(self, username: str, failed: MessageRecord, recipient: KnownUser) -> MessageRecord:
        """Send again a message that failed (Retry on the page): sealed anew, with
        its id and sent_at, so it keeps its place and the recipient's node drops a
        copy it may have after all."""
        if not has_keys(recipient):
            raise errors.RecipientNotReady(
                f"{recipient.username} has not signed in yet; write a new message and it will wait for them"
            )
        keys = self.keyring.require(username)
        body = {"text": failed.body}
        envelope = self._seal(keys, username, recipient, failed.id, failed.sent_at, "message", body)
        now = ms(self.clock)
        async with self.db.write() as conn:
            record = await node_messages.set_state(conn, username, failed.id, "pending", only_from="failed")
            if record is not None:
                await self._enqueue(conn, envelope, now)
        if record is None:  # another tab retried it first
            async with self.db.read() as conn:
                return await node_messages.find_message(conn, username, failed.id) or failed
        self.events.publish(username, _state_event(record))
        self._wake()
        return record

    async def check_may_send(self, username: str, peer: str) -> KnownUser:
        """The checks every send passes: not blocked, recipient known, within rate.
        A recipient without keys yet (never signed in) may be written to: the
        message waits for them."""
        if await self.blocks.is_blocked(username, peer):
            raise UserBlocked(f"you have blocked {peer}; unblock them to write to them")
        recipient = await self.directory.resolve(peer)
        changed = (await self.directory.key_warnings(username)).get(peer)
        if changed is not None:
            raise errors.KeysChanged(
                f"{peer}'s security keys changed; check with {peer} that this is expected "
                "(a password reset makes new keys), then confirm before writing again",
                field="peer",
                username=peer,
                changed_at=changed.changed_at,
            )
        self.keyring.require(username)
        await self.limits.hit("messages", username)
        return recipient

    async def count_file_bytes(self, username: str, size: int) -> None:
        """Charge a file about to be uploaded to its sender's hourly file budget:
        ``429`` with Retry-After when the budget is spent, ``413`` when this file
        alone is larger than the whole budget."""
        await self.limits.hit("file-bytes", username, cost=max(1, size))

    async def send_sealed(
        self,
        username: str,
        peer: str,
        message_id: str,
        kind: str,
        body: dict[str, Any],
        history_text: str,
        *,
        also: Callable[[Any, int], Awaitable[None]] | None = None,
        recipient: KnownUser | None = None,
    ) -> MessageRecord:
        """Seal ``body`` as ``kind``, then store history row, outbox entry and
        whatever ``also(conn, now)`` writes in one transaction.

        A recipient without keys yet, or one whom older messages of this pair
        still wait for, gets nothing sealed now: the message waits (state
        ``waiting``) and is sealed, with this id and sent_at, once it can go."""
        recipient = recipient or await self.directory.resolve(peer)
        keys = self.keyring.require(username)
        await self.waiting.load()
        now = await self._next_sent_at(username, peer)
        if not has_keys(recipient) or self.waiting.holds(username, peer):
            held = await self.waiting.hold(
                owner=username,
                peer=peer,
                message_id=message_id,
                kind=kind,
                body=body,
                history_text=history_text,
                history_kind="text" if kind == "message" else kind,
                sent_at=now,
                also=also,
            )
            if held is None:
                raise AlreadyStored(message_id)
            self.events.publish(username, {"type": "message", "message": message_view(held)})
            return held
        envelope = self._seal(keys, username, recipient, message_id, now, kind, body)
        async with self.db.write() as conn:
            record = await node_messages.add_message(
                conn,
                owner=username,
                peer=peer,
                message_id=message_id,
                direction="out",
                sender=username,
                recipient=peer,
                body=history_text,
                sent_at=now,
                state="pending",
                now=now,
                kind="text" if kind == "message" else kind,
            )
            if record is None:
                raise AlreadyStored(message_id)
            if also is not None:
                await also(conn, now)
            await self._enqueue(conn, envelope, now)
        self.events.publish(username, {"type": "message", "message": message_view(record)})
        self._wake()
        return record

    async def _next_sent_at(self, username: str, peer: str) -> int:
        """The sender's clock in ms, made strictly increasing per conversation.

        The recipient orders a conversation by the sealed ``sent_at``; envelopes
        may arrive by different roads (direct, relay, retry), so two sends in one
        millisecond, or a clock stepped back, must not swap places there. The
        last value is seeded from the history once per conversation, so a
        restart keeps the rule; nothing awaits between reading and setting it,
        so concurrent sends get distinct values in the order they were sealed.
        """
        key = (username, peer)
        if key not in self._last_sent:
            async with self.db.read() as conn:
                last = await node_messages.last_sent_at(conn, username, peer)
            self._last_sent.setdefault(key, last)
        at = max(ms(self.clock), self._last_sent[key] + 1)
        self._last_sent[key] = at
        return at

    async def safety_number(self, username: str, peer: str) -> str:
        """The digits ``username`` and ``peer`` compare, out of band, to know that
        this node seals to ``peer``'s real keys (and theirs to ``username``'s)."""
        mine = self.keyring.require(username).public
        theirs = await self._recipient(peer)
        assert theirs.sign_key is not None  # _recipient checked both
        assert theirs.box_key is not None
        return await asyncio.to_thread(
            safety_number,
            (username, mine.sign, mine.box),
            (peer, theirs.sign_key, theirs.box_key),
        )

    async def verify_contact(self, username: str, peer: str, compared: str) -> None:
        """Mark ``peer`` verified for ``username``: only if ``compared``, the number
        they read out to each other, is the number of the keys held now (keys that
        changed since the page showed it are not verified by mistake)."""
        theirs = await self._recipient(peer)
        assert theirs.sign_key is not None  # _recipient checked both
        assert theirs.box_key is not None
        current = await self.safety_number(username, peer)
        if " ".join(compared.split()) != current:
            raise errors.Conflict(
                f"{peer}'s keys are not the ones whose safety number you compared; compare again",
                field="safety_number",
            )
        await self.directory.mark_verified(username, peer, (theirs.sign_key, theirs.box_key))

    def register_kind(self, kind: str, handler: KindHandler) -> None:
        """Let another service accept envelopes of ``kind`` (files)."""
        self._kinds[kind] = handler

    async def _recipient(self, username: str) -> KnownUser:
        recipient = await self.directory.resolve(username)
        if recipient.box_key is None or recipient.sign_key is None:
            raise errors.RecipientNotReady(f"{username} has not logged in yet, so has no keys to encrypt to")
        return recipient

    @staticmethod
    def _seal(
        keys: UserKeys,
        sender: str,
        recipient: KnownUser,
        envelope_id: str,
        now: int,
        kind: str,
        body: dict[str, Any],
    ) -> SealedEnvelope:
        assert recipient.box_key is not None
        return seal_envelope(
            sender_keys=keys,
            sender=sender,
            recipient=recipient.username,
            recipient_box_key=recipient.box_key,
            envelope_id=envelope_id,
            sent_at=now,
            kind=kind,
            body=body,
        )

    async def _enqueue(self, conn: Any, envelope: SealedEnvelope, now: int) -> None:
        await node_messages.enqueue(
            conn,
            envelope_id=envelope.id,
            sender=envelope.sender,
            recipient=envelope.recipient,
            payload=json.dumps(envelope.to_wire()),
            now=now,
            expires_at=now + int(self.outbox_ttl * 1000),
        )

    async def history(
        self,
        username: str,
        peer: str,
        *,
        before: str | None = None,
        after: str | None = None,
        around: str | None = None,
        limit: int = 50,
    ) -> tuple[list[MessageRecord], str | None, str | None]:
        """A page of a conversation, oldest first, with cursors for older and newer.

        ``before``: the newest ``limit`` older than the cursor (the default page
        is the newest). ``after``: the oldest ``limit`` newer than the cursor.
        ``around``: a message id; the page holds it and the messages around it
        (how a search result opens its conversation).
        """
        limit = max(1, min(limit, PAGE_LIMIT))
        async with self.db.read() as conn:
            if around is not None:
                target = await node_messages.find_message(conn, username, around)
                if target is None or target.peer != peer:
                    raise errors.NotFound("no such message in this conversation", field="around")
                half = max(1, limit // 2)
                older = await node_messages.page(
                    conn, username, peer, before=(target.sent_at, target.seq + 1), limit=half
                )
                newer = await node_messages.page_after(
                    conn, username, peer, after=(target.sent_at, target.seq), limit=limit - len(older)
                )
                rows = older + newer
                has_older = len(older) == half
                has_newer = len(newer) == limit - len(older)
            elif after is not None:
                rows = await node_messages.page_after(
                    conn, username, peer, after=decode_cursor(after) or (0, 0), limit=limit
                )
                has_older, has_newer = True, len(rows) == limit
            else:
                rows = await node_messages.page(
                    conn, username, peer, before=decode_cursor(before), limit=limit
                )
                has_older, has_newer = len(rows) == limit, before is not None
        next_cursor = encode_cursor(rows[0]) if rows and has_older else None
        newer_cursor = encode_cursor(rows[-1]) if rows and has_newer else None
        return rows, next_cursor, newer_cursor

    async def set_state(self, owner: str, message_id: str, state: str, error: str | None = None) -> None:
        await self.set_states(owner, [message_id], state, error)

    async def set_states(
        self, owner: str, message_ids: list[str], state: str, error: str | None = None
    ) -> None:
        """Move ``owner``'s messages to ``state``, never backwards (a late "sent" after "read")."""
        async with self.db.write() as conn:
            changed = await node_messages.advance_states(
                conn, owner, message_ids, state, behind(state), error=error
            )
        for record in changed:
            self.events.publish(owner, _state_event(record))

    async def unread(self, username: str) -> dict[str, int]:
        """Unread received messages per conversation (the badges in the people list)."""
        async with self.db.read() as conn:
            return await node_messages.unread_counts(conn, username)

    # --- reading ---------------------------------------------------------------------

    async def mark_read(self, username: str, peer: str, up_to: str) -> int:
        """Mark incoming messages up to ``up_to`` read and tell their sender."""
        keys = self.keyring.require(username)
        async with self.db.read() as conn:
            newest = await node_messages.find_message(conn, username, up_to)
            if newest is None or newest.peer != peer:
                raise errors.NotFound("no such message in this conversation", field="up_to")
            unread = await node_messages.unread_upto(conn, username, peer, newest)
        if not unread:
            return 0
        sender = await self._recipient(peer)
        now = ms(self.clock)
        for start in range(0, len(unread), MAX_RECEIPT_IDS):
            chunk = [m.id for m in unread[start : start + MAX_RECEIPT_IDS]]
            receipt = self._seal(
                keys,
                username,
                sender,
                receipt_id("read", username, chunk),
                now,
                "receipt",
                {"status": "read", "message_ids": chunk},
            )
            async with self.db.write() as conn:
                for message_id in chunk:
                    await node_messages.set_state(conn, username, message_id, "read")
                await self._enqueue(conn, receipt, now)
        self._wake()
        return len(unread)

    # --- receiving ------------------------------------------------------------------

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

    async def _examine(
        self, from_node: str, wire: dict[str, Any], relayed: bool, seen: _BatchLookups
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
            sender = await self.directory.resolve(envelope.sender)
        sender = await self._check_origin(envelope, sender, None if relayed else from_node)
        seen.senders[envelope.sender] = sender
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
                else:
                    record = await self._store_opened(conn, opened, now, after)
                    stored = record is not None
                    if record is not None:
                        events.append(
                            (opened.recipient, {"type": "message", "message": message_view(record)})
                        )
                        if item.sender.box_key is not None and item.keys is not None:
                            key = (opened.recipient, opened.sender)
                            to_receipt.setdefault(key, (item.keys, item.sender, []))[2].append(opened.id)
                outcomes[index] = Outcome(outcomes[index].id, "stored" if stored else "duplicate")
            for (recipient, _sender), (keys, sender, ids) in to_receipt.items():
                for start in range(0, len(ids), MAX_RECEIPT_IDS):
                    chunk = ids[start : start + MAX_RECEIPT_IDS]
                    receipt = self._seal(
                        keys,
                        recipient,
                        sender,
                        receipt_id("delivered", recipient, chunk),
                        now,
                        "receipt",
                        {"status": "delivered", "message_ids": chunk},
                    )
                    await self._enqueue(conn, receipt, now)
        for handler, opened in after:
            handler.after_commit(opened)
        for owner, event in events:
            self.events.publish(owner, event)
        if to_receipt:
            self._wake()
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
        )
        if record is not None and handler is not None:
            await handler.stored(conn, opened, now)
            after.append((handler, opened))
        return record

    async def _check_origin(
        self, envelope: SealedEnvelope, sender: KnownUser, from_node: str | None = None
    ) -> KnownUser:
        """Check the sender's outer signature and (unless relayed) that ``from_node``
        is the sender's home; a cached record that fails is refreshed once, since
        the sender may have moved or rotated keys since it was cached."""
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
                    fresh = await self.directory.resolve(envelope.sender, max_age=0)
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
        return [(opened.recipient, _state_event(record)) for record in changed]

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
                except errors.DirectoryUnavailable:
                    return opened_count  # keep it held; try again at the next login
                except (CryptoError, errors.FlameError, ValueError) as exc:
                    log.warning("dropping held envelope %s: %s", item.envelope_id, exc)
                async with self.db.write() as conn:
                    await node_messages.release(conn, item.seq)
