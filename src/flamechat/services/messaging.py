"""Sending and reading messages, the history, and the receipts that follow them.

Send: seal (sign as the sender, encrypt to the recipient), then store the
history row and the outbox entry in one transaction before answering. To
someone who has not signed in yet (no keys to seal to) the message waits,
unsealed, on this node until they have keys (``services/waiting.py``).
Reading queues a read receipt (sealed, signed by the reader); the receiving
side (``services/receiving.py``) queues delivery receipts through the same
``queue_receipt``. Receipt ids are derived from their content, so a receipt
sent twice is the same receipt.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from flamechat.crypto import (
    SealedEnvelope,
    UserKeys,
    seal_envelope,
)
from flamechat.crypto.safety import safety_number
from flamechat.protocol import errors
from flamechat.protocol.ids import new_id
from flamechat.services.blocks import BlockService
from flamechat.services.clock import Clock, ms
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.ratelimit import RateLimits
from flamechat.services.waiting import WaitingSends, enqueue_sealed, has_keys, state_event
from flamechat.storage import node_messages
from flamechat.storage.database import Database
from flamechat.storage.records import KnownUser, MessageRecord

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
PAGE_LIMIT = 200
MAX_RECEIPT_IDS = 500
STATE_RANK = {"failed": -1, "waiting": 0, "pending": 1, "sent": 2, "delivered": 3, "read": 4}
_RECEIPT_NAMESPACE = uuid.UUID("5b0c1f7e-6a36-4e0b-9a43-9d3c1c6f2f10")


def behind(state: str) -> tuple[str, ...]:
    """The states a message may move to ``state`` from: only forwards; "failed" from any
    state short of delivered (a refusal after a relay took it cannot undo "sent")."""
    if state == "failed":
        return ("waiting", "pending", "sent")
    return tuple(s for s, rank in STATE_RANK.items() if rank < STATE_RANK[state])


class AlreadyStored(Exception):
    """A message with this id is stored already (a retried send); send() answers it."""


class UserBlocked(errors.Conflict):
    code = "user_blocked"


def message_body(text: str, reply_to: str | None) -> dict[str, Any]:
    """What a ``message`` envelope seals: the text, and the message it answers if any."""
    return {"text": text} if reply_to is None else {"text": text, "reply_to": reply_to}


QUOTE_CHARS = 200  # of the quoted message's text, in a reply's view


def quote_view(reply_to: str, quoted: MessageRecord | None, conversation: str) -> dict[str, Any]:
    """What a reply shows of the message it answers, from this side's own copy: its
    text as it is now (edited, or ``deleted`` — also when not in this conversation's
    history, never arrived or deleted for oneself)."""
    if quoted is None or quoted.peer != conversation:
        return {"id": reply_to, "sender": None, "text": "", "deleted": True}
    if quoted.deleted_at is not None:
        return {"id": reply_to, "sender": quoted.sender, "text": "", "deleted": True}
    return {"id": reply_to, "sender": quoted.sender, "text": quoted.body[:QUOTE_CHARS], "deleted": False}


def message_view(record: MessageRecord, quoted: dict[str, MessageRecord] | None = None) -> dict[str, Any]:
    """A message as pages and scripts see it. ``quoted``: the messages replies may
    quote (this owner's, by id); without it a reply's ``reply_to`` is left out
    (a live change of a message already drawn keeps the quote the page shows)."""
    view = _view(record)
    if record.reply_to is None:
        view["reply_to"] = None
    elif quoted is not None:
        view["reply_to"] = quote_view(record.reply_to, quoted.get(record.reply_to), record.peer)
    return view


def _view(record: MessageRecord) -> dict[str, Any]:
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
        "edited_at": record.edited_at,
        "deleted": record.deleted_at is not None,
    }


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
        self._last_sent: dict[tuple[str, str], int] = {}
        self.waiting = waiting or WaitingSends(db, directory, keyring, events, clock, ttl=outbox_ttl)

    def on_queued(self, wake: Callable[[], None]) -> None:
        """Called after something is put in the outbox (wakes the delivery worker)."""
        self._wake = wake
        self.waiting.on_queued(wake)

    def wake(self) -> None:
        """Tell the delivery worker that the outbox has something new."""
        self._wake()

    # --- sending --------------------------------------------------------------------

    async def send(
        self, username: str, peer: str, text: str, message_id: str | None = None, reply_to: str | None = None
    ) -> MessageRecord:
        if len(text.encode()) > MAX_BODY_BYTES:
            raise errors.MessageTooLarge(
                f"a message holds at most {MAX_BODY_BYTES} bytes of text", field="body"
            )
        if not text.strip():
            raise errors.InvalidRequest("the message is empty", field="body")
        message_id = message_id or new_id()
        if reply_to is not None:
            async with self.db.read() as conn:
                quoted = await node_messages.find_message(conn, username, reply_to)
            if quoted is None or quoted.peer != peer:
                raise errors.NotFound("the message replied to is not in this conversation", field="reply_to")
        recipient = await self.check_may_send(username, peer)
        await self.limits.hit("bytes", username, cost=max(1, len(text.encode())))
        body = message_body(text, reply_to)
        try:
            return await self.send_sealed(
                username, peer, message_id, "message", body, text, recipient=recipient, reply_to=reply_to
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
        body = message_body(failed.body, failed.reply_to)
        envelope = self._seal(keys, username, recipient, failed.id, failed.sent_at, "message", body)
        now = ms(self.clock)
        async with self.db.write() as conn:
            record = await node_messages.set_state(conn, username, failed.id, "pending", only_from="failed")
            if record is not None:
                await self._enqueue(conn, envelope, now)
        if record is None:  # another tab retried it first
            async with self.db.read() as conn:
                return await node_messages.find_message(conn, username, failed.id) or failed
        self.events.publish(username, state_event(record))
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
        reply_to: str | None = None,
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
                reply_to=reply_to,
            )
            if held is None:
                raise AlreadyStored(message_id)
            self.events.publish(username, {"type": "message", "message": await self.view(held)})
            return held
        envelope = self._seal(keys, username, recipient, message_id, now, kind, body)
        async with self.db.write() as conn:
            record = await node_messages.add_outgoing(
                conn,
                owner=username,
                peer=peer,
                message_id=message_id,
                body=history_text,
                sent_at=now,
                state="pending",
                kind="text" if kind == "message" else kind,
                reply_to=reply_to,
            )
            if record is None:
                raise AlreadyStored(message_id)
            if also is not None:
                await also(conn, now)
            await self._enqueue(conn, envelope, now)
        self.events.publish(username, {"type": "message", "message": await self.view(record)})
        self._wake()
        return record

    async def seal_control(
        self, username: str, peer: str, kind: str, body: dict[str, Any]
    ) -> tuple[SealedEnvelope, int]:
        """Seal an envelope that is not a message (an edit, a deletion) from ``username``
        to ``peer``, stamped with the conversation's next ``sent_at``; queue it with
        :meth:`enqueue` in the transaction that records what it says."""
        recipient = await self._recipient(peer)
        keys = self.keyring.require(username)
        at = await self._next_sent_at(username, peer)
        return self._seal(keys, username, recipient, new_id(), at, kind, body), at

    async def enqueue(self, conn: Any, envelope: SealedEnvelope, now: int) -> None:
        """Queue ``envelope`` in the caller's transaction; :meth:`wake` after it commits."""
        await self._enqueue(conn, envelope, now)

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

    async def _recipient(self, username: str) -> KnownUser:
        recipient = await self.directory.resolve(username)
        if not has_keys(recipient):
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
        await enqueue_sealed(conn, envelope, now, self.outbox_ttl)

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

    async def views(self, owner: str, records: list[MessageRecord]) -> list[dict[str, Any]]:
        """``owner``'s messages as pages see them, replies with their quotes (one read)."""
        wanted = {r.reply_to for r in records if r.reply_to is not None}
        quoted: dict[str, MessageRecord] = {}
        if wanted:
            async with self.db.read() as conn:
                quoted = await node_messages.find_messages(conn, owner, wanted)
        return [message_view(r, quoted) for r in records]

    async def view(self, record: MessageRecord) -> dict[str, Any]:
        return (await self.views(record.owner, [record]))[0]

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
            self.events.publish(owner, state_event(record))

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
            async with self.db.write() as conn:
                for message_id in chunk:
                    await node_messages.set_state(conn, username, message_id, "read")
                await self.queue_receipt(conn, keys, username, sender, "read", chunk, now)
        self._wake()
        return len(unread)

    async def queue_receipt(
        self,
        conn: Any,
        keys: UserKeys,
        username: str,
        to: KnownUser,
        status: str,
        message_ids: list[str],
        now: int,
    ) -> None:
        """Seal ``username``'s receipt (``delivered`` or ``read``) for at most
        MAX_RECEIPT_IDS of ``to``'s messages, and queue it in the caller's transaction."""
        receipt = self._seal(
            keys,
            username,
            to,
            receipt_id(status, username, message_ids),
            now,
            "receipt",
            {"status": status, "message_ids": message_ids},
        )
        await self._enqueue(conn, receipt, now)
