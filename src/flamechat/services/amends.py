"""Editing a message, and deleting it for everyone or for oneself.

The sender changes their own copy and, in the same transaction, queues an
envelope of kind ``amend`` for the recipient: ``{"message_id", "text"}`` for
an edit, ``{"message_id", "deleted": true}`` for a deletion. It is sealed and
signed like a message and travels the same road (outbox, retries, relays,
held sealed while the recipient is signed out), so nobody in between reads the
new text either. Its ``sent_at`` orders the amends of one message: an older
one that arrives late changes nothing, and a deletion is final.

The recipient's node applies an amend only to a message it received from the
amend's sender. One that arrives before its message (they may travel by
different roads) is kept and applied when the message comes; such amends
are bounded per pair and forgotten after the outbox's lifetime.

A message that still waits for its recipient's first sign-in (nothing sealed
yet) is changed where it waits, and nothing is sent. Deleting for oneself
touches only one's own history; a received message so deleted is remembered
(as a ``remove`` among the early amends), so that a late copy of it (a retry,
a relay) does not bring it back. A deleted file message loses its attachment
row, with the file's key, and its blob is removed from disk once nothing here
needs it (the sender's copy stays while a recipient may still fetch it).

Every message received is looked up among the early amends, which are almost
always none: the service counts them (an upper bound: a count that may be too
high costs a lookup, one too low would lose an amend) and skips the lookup
while there are none.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flamechat.crypto import OpenedEnvelope
from flamechat.protocol import errors
from flamechat.services.clock import Clock, ms
from flamechat.services.events import EventHub
from flamechat.services.files import FileService
from flamechat.services.messaging import MAX_BODY_BYTES, MessagingService, message_body, message_view
from flamechat.storage import node_amends, node_messages, node_waiting
from flamechat.storage.database import Database
from flamechat.storage.records import MessageRecord

log = logging.getLogger(__name__)

AMEND_KIND = "amend"
EARLY_PER_PAIR = 1000  # amends kept for messages not arrived yet, per (recipient, sender)


class MessageNotAmendable(errors.Conflict):
    code = "message_not_amendable"


def changed_event(record: MessageRecord) -> dict[str, Any]:
    return {"type": "message_changed", "message": message_view(record)}


class AmendService:
    def __init__(
        self,
        db: Database,
        messaging: MessagingService,
        files: FileService,
        events: EventHub,
        clock: Clock,
        *,
        keep_for: float,
    ) -> None:
        self.db = db
        self.messaging = messaging
        self.files = files
        self.events = events
        self.clock = clock
        # Blobs of file messages deleted in a transaction, removed from disk after it
        # (``reclaim`` looks again first: one whose transaction was rolled back stays).
        self._blobs: set[str] = set()
        self.keep_for = keep_for  # seconds an early amend waits for its message
        self._early: int | None = None  # at least how many are kept (None: not counted yet: look)
        self._kept = 0  # early amends kept so far: a count read meanwhile may be stale

    # --- the sender's side --------------------------------------------------------------

    async def edit(self, username: str, peer: str, message_id: str, text: str) -> MessageRecord:
        if len(text.encode()) > MAX_BODY_BYTES:
            raise errors.MessageTooLarge(
                f"a message holds at most {MAX_BODY_BYTES} bytes of text", field="body"
            )
        if not text.strip():
            raise errors.InvalidRequest("the message is empty; delete it instead", field="body")
        record = await self._own(username, peer, message_id, "edited")
        if record.deleted_at is not None:
            raise MessageNotAmendable("this message was deleted", field="id")
        if record.state == "failed":
            raise MessageNotAmendable("this message was not sent; send it again or delete it", field="id")
        if record.kind != "text":
            raise MessageNotAmendable("a file cannot be edited; delete it and send another", field="id")
        if record.body == text:
            return record
        # New text is written like a message: not to someone blocked, not sealed to keys
        # that changed unconfirmed, and within the same rates.
        await self.messaging.check_may_send(username, peer)
        await self.messaging.limits.hit("bytes", username, cost=max(1, len(text.encode())))
        if record.state == "waiting":
            edited = await self._edit_waiting(record, text)
            if edited is not None:
                return edited
        envelope, at = await self.messaging.seal_control(
            username, peer, AMEND_KIND, {"message_id": message_id, "text": text}
        )
        async with self.db.write() as conn:
            edited = await node_amends.edit(conn, username, message_id, text, at)
            if edited is None:
                raise MessageNotAmendable("this message was deleted meanwhile", field="id")
            await self.messaging.enqueue(conn, envelope, ms(self.clock))
        self.events.publish(username, changed_event(edited))
        self.messaging.wake()
        return edited

    async def delete_for_everyone(self, username: str, peer: str, message_id: str) -> MessageRecord:
        record = await self._own(username, peer, message_id, "deleted for everyone")
        if record.deleted_at is not None:
            return record
        if record.state == "waiting":
            deleted = await self._delete_unsent(username, record)
            if deleted is not None:
                return deleted
        try:
            envelope, at = await self.messaging.seal_control(
                username, peer, AMEND_KIND, {"message_id": message_id, "deleted": True}
            )
        except (errors.RecipientNotReady, errors.UnknownUser):
            if record.state != "failed":
                raise
            # Failed, and nobody to seal to now (the account was closed): it is theirs no more.
            return await self._delete_unsent(username, record) or record
        async with self.db.write() as conn:
            deleted = await self._mark_deleted(conn, username, message_id, at, revoke_from=peer)
            if deleted is None:  # another tab deleted it first
                return await self._find(username, peer, message_id)
            await self.messaging.enqueue(conn, envelope, ms(self.clock))
        await self.after_commit()
        self.events.publish(username, changed_event(deleted))
        self.messaging.wake()
        return deleted

    async def delete_for_me(self, username: str, peer: str, message_id: str) -> None:
        """Take a message out of ``username``'s own history; the other side keeps theirs."""
        record = await self._find(username, peer, message_id)
        async with self.db.write() as conn:
            if record.state == "waiting":
                await node_waiting.take(conn, username, [message_id])  # never sent now
            await self._forget_file(conn, username, message_id)  # a recipient keeps their grant
            removed = await node_amends.remove(conn, username, message_id)
            if removed and record.direction == "in":  # a late copy of it must stay out
                await self._keep(conn, username, peer, message_id, "remove", None, ms(self.clock))
        await self.after_commit()
        if removed:
            self.events.publish(username, {"type": "message_removed", "id": message_id, "conversation": peer})

    async def _find(self, username: str, peer: str, message_id: str) -> MessageRecord:
        async with self.db.read() as conn:
            record = await node_messages.find_message(conn, username, message_id)
        if record is None or record.peer != peer:
            raise errors.NotFound("no such message in this conversation", field="id")
        return record

    async def _own(self, username: str, peer: str, message_id: str, what: str) -> MessageRecord:
        record = await self._find(username, peer, message_id)
        if record.direction != "out":
            raise MessageNotAmendable(f"only your own messages can be {what}", field="id")
        return record

    async def _edit_waiting(self, record: MessageRecord, text: str) -> MessageRecord | None:
        """Change a message that waits unsealed; ``None`` if it was sealed meanwhile."""
        at = ms(self.clock)
        username, message_id = record.owner, record.id
        body = json.dumps(message_body(text, record.reply_to))  # a reply stays a reply
        async with self.messaging.waiting.lock, self.db.write() as conn:
            if not await node_waiting.set_body(conn, username, message_id, body):
                return None
            edited = await node_amends.edit(conn, username, message_id, text, at)
        if edited is not None:
            self.events.publish(username, changed_event(edited))
        return edited

    async def _delete_unsent(self, username: str, record: MessageRecord) -> MessageRecord | None:
        """Delete a message here only: one that never left (waiting), or a failed one
        with nobody to tell. ``None`` if a waiting one was sealed and queued meanwhile.
        (A failed message may have reached a relay before it failed: while its
        recipient has keys, its deletion is sent like any other.)"""
        at = ms(self.clock)
        async with self.messaging.waiting.lock, self.db.write() as conn:
            if record.state == "waiting" and not await node_waiting.take(conn, username, [record.id]):
                return None
            deleted = await self._mark_deleted(conn, username, record.id, at, revoke_from=record.peer)
        await self.after_commit()
        if deleted is not None:
            self.events.publish(username, changed_event(deleted))
        return deleted or record

    async def _mark_deleted(
        self, conn: Any, owner: str, message_id: str, at: int, *, revoke_from: str | None = None
    ) -> MessageRecord | None:
        deleted = await node_amends.mark_deleted(conn, owner, message_id, at)
        if deleted is not None:
            await self._forget_file(conn, owner, message_id, revoke_from=revoke_from)
        return deleted

    async def _forget_file(
        self, conn: Any, owner: str, message_id: str, *, revoke_from: str | None = None
    ) -> None:
        blob_id = await self.files.forget(conn, owner, message_id, revoke_from=revoke_from)
        if blob_id is not None:
            self._blobs.add(blob_id)

    async def after_commit(self) -> None:
        """Remove from disk the blobs of deleted file messages that nothing needs now."""
        if self._blobs:
            blobs, self._blobs = self._blobs, set()
            await self.files.reclaim(blobs)

    # --- the recipient's side -------------------------------------------------------------

    async def received(self, conn: Any, opened: OpenedEnvelope, now: int) -> list[tuple[str, dict[str, Any]]]:
        """Apply an amend in the receiving transaction; the events to publish after it."""
        target, text = parse_amend(opened.body)
        if target is None:
            log.info("ignoring malformed amend %s", opened.id)
            return []
        record = await node_messages.find_message(conn, opened.recipient, target)
        if record is None:
            action = "delete" if text is None else "edit"
            await self._keep(conn, opened.recipient, opened.sender, target, action, text, opened.sent_at)
            return []
        if record.direction != "in" or record.sender != opened.sender:
            log.info("ignoring amend %s: %s did not send message %s", opened.id, opened.sender, target)
            return []
        changed = await self._apply(conn, record, text, opened.sent_at)
        return [] if changed is None else [(opened.recipient, changed_event(changed))]

    async def arrived(self, conn: Any, record: MessageRecord) -> MessageRecord | None:
        """A message just stored: apply the amend that came before it, if one did.
        ``None`` if its recipient had deleted it for themselves (it is taken out again)."""
        if self._early == 0:
            return record
        early = await node_amends.take_early(conn, record.owner, record.id, record.sender)
        if early is None:
            return record
        if early.action == "remove":
            await self._forget_file(conn, record.owner, record.id)
            await node_amends.remove(conn, record.owner, record.id)
            await self._keep(conn, record.owner, record.sender, record.id, "remove", None, early.at)
            return None
        return await self._apply(conn, record, early.text, early.at) or record

    async def _keep(
        self, conn: Any, owner: str, peer: str, message_id: str, action: str, text: str | None, at: int
    ) -> None:
        self._kept += 1
        self._early = None if self._early is None else self._early + 1  # before it can commit
        await node_amends.keep_early(
            conn,
            owner=owner,
            peer=peer,
            message_id=message_id,
            action=action,
            text=text,
            at=at,
            now=ms(self.clock),
            most=EARLY_PER_PAIR,
        )

    async def _apply(
        self, conn: Any, record: MessageRecord, text: str | None, at: int
    ) -> MessageRecord | None:
        if text is None:
            return await self._mark_deleted(conn, record.owner, record.id, at)
        return await node_amends.edit(conn, record.owner, record.id, text, at)

    async def forget_early(self) -> int:
        """Forget amends whose message has not come in ``keep_for`` seconds, and count
        those left (at start, then now and then: the count only grows in between)."""
        kept = self._kept
        async with self.db.write() as conn:
            dropped = await node_amends.drop_early_before(conn, ms(self.clock) - int(self.keep_for * 1000))
            counted = await node_amends.count_early(conn)
        # Committed once the block returns: the count is what later writes build on.
        # One kept meanwhile (in the same commit, after the count) may not be in it.
        if self._kept == kept:
            self._early = counted
        return dropped


def parse_amend(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(target message id, new text or ``None`` for a deletion); a target of ``None``
    when the body is not an amend a sending node can produce."""
    target = body.get("message_id")
    if not isinstance(target, str) or not 0 < len(target) <= 36:
        return None, None
    if body.get("deleted") is True:
        return target, None
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text.encode()) > MAX_BODY_BYTES:
        return None, None
    return target, text
