"""Sending, receiving and reading messages.

Send: seal (sign as the sender, encrypt to the recipient), then store the
history row and the outbox entry in one transaction before answering.
Receive: check the envelope's origin, then open it if the recipient's keys
are unlocked, or hold it sealed until they log in. Either way it is on disk
before the peer gets its 2xx, and a repeated id is a no-op.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Literal

from flamechat.crypto import (
    OpenedEnvelope,
    SealedEnvelope,
    open_envelope,
    seal_envelope,
    verify_envelope_origin,
)
from flamechat.crypto.errors import CryptoError
from flamechat.protocol import errors
from flamechat.protocol.ids import new_id
from flamechat.services.clock import Clock, ms
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.storage import node_accounts, node_messages
from flamechat.storage.database import Database
from flamechat.storage.records import MessageRecord

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
PAGE_LIMIT = 200


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
    }


class MessagingService:
    def __init__(
        self,
        db: Database,
        directory: DirectoryView,
        keyring: KeyRing,
        events: EventHub,
        clock: Clock,
        *,
        node_id: str,
        outbox_ttl: float = 7 * 24 * 3600,
    ) -> None:
        self.db = db
        self.directory = directory
        self.keyring = keyring
        self.events = events
        self.clock = clock
        self.node_id = node_id
        self.outbox_ttl = outbox_ttl
        self._wake: Callable[[], None] = lambda: None

    def on_queued(self, wake: Callable[[], None]) -> None:
        """Called after something is put in the outbox (wakes the delivery worker)."""
        self._wake = wake

    # --- sending --------------------------------------------------------------------

    async def send(self, username: str, peer: str, text: str, message_id: str | None = None) -> MessageRecord:
        if len(text.encode()) > MAX_BODY_BYTES:
            raise errors.MessageTooLarge(
                f"a message holds at most {MAX_BODY_BYTES} bytes of text", field="body"
            )
        if not text.strip():
            raise errors.InvalidRequest("the message is empty", field="body")
        message_id = message_id or new_id()
        async with self.db.read() as conn:
            existing = await node_messages.find_message(conn, username, message_id)
        if existing is not None:
            if existing.peer != peer or existing.body != text:
                raise errors.Conflict("this message id is already used", field="id")
            return existing  # the browser retried: same answer, nothing duplicated
        recipient = await self.directory.resolve(peer)
        if recipient.box_key is None or recipient.sign_key is None:
            raise errors.RecipientNotReady(f"{peer} has not logged in yet, so has no keys to encrypt to")
        keys = self.keyring.require(username)
        now = ms(self.clock)
        envelope = seal_envelope(
            sender_keys=keys,
            sender=username,
            recipient=peer,
            recipient_box_key=recipient.box_key,
            envelope_id=message_id,
            sent_at=now,
            kind="message",
            body={"text": text},
        )
        async with self.db.write() as conn:
            record = await node_messages.add_message(
                conn,
                owner=username,
                peer=peer,
                message_id=message_id,
                direction="out",
                sender=username,
                recipient=peer,
                body=text,
                sent_at=now,
                state="pending",
                now=now,
            )
            await node_messages.enqueue(
                conn,
                envelope_id=message_id,
                sender=username,
                recipient=peer,
                payload=json.dumps(envelope.to_wire()),
                now=now,
                expires_at=now + int(self.outbox_ttl * 1000),
            )
        assert record is not None
        self.events.publish(username, {"type": "message", "message": message_view(record)})
        self._wake()
        return record

    async def history(
        self, username: str, peer: str, *, before: int | None, limit: int
    ) -> tuple[list[MessageRecord], int | None]:
        limit = max(1, min(limit, PAGE_LIMIT))
        async with self.db.read() as conn:
            rows = await node_messages.page(conn, username, peer, before=before, limit=limit)
        next_cursor = rows[0].seq if len(rows) == limit else None
        return rows, next_cursor

    async def set_state(self, owner: str, message_id: str, state: str, error: str | None = None) -> None:
        async with self.db.write() as conn:
            record = await node_messages.set_state(conn, owner, message_id, state, error)
        if record is not None:
            self.events.publish(
                owner,
                {
                    "type": "message_state",
                    "id": message_id,
                    "conversation": record.peer,
                    "state": state,
                    "error": error,
                },
            )

    # --- receiving ------------------------------------------------------------------

    async def receive(self, from_node: str, wire: dict[str, Any]) -> Literal["stored", "duplicate"]:
        try:
            envelope = SealedEnvelope.from_wire(wire)
        except CryptoError as exc:
            raise errors.InvalidRequest(str(exc), field="envelope") from exc
        async with self.db.read() as conn:
            hosted = await node_accounts.get_account(conn, envelope.recipient)
        if hosted is None:
            raise errors.UnknownUser(f"{envelope.recipient!r} does not live on this node")
        sender = await self.directory.resolve(envelope.sender)
        if sender.home_node != from_node:
            raise errors.Forbidden(f"node {from_node} may not deliver for {envelope.sender}")
        if sender.sign_key is None:
            raise errors.EnvelopeRejected(f"{envelope.sender} has no published key")
        try:
            verify_envelope_origin(envelope, sender.sign_key)
        except CryptoError as exc:
            raise errors.EnvelopeRejected("the sender's signature does not verify") from exc

        keys = self.keyring.get(envelope.recipient)
        if keys is None:
            async with self.db.write() as conn:
                if await node_messages.find_message(conn, envelope.recipient, envelope.id):
                    return "duplicate"
                held = await node_messages.hold(
                    conn,
                    recipient=envelope.recipient,
                    envelope_id=envelope.id,
                    sender=envelope.sender,
                    payload=json.dumps(wire),
                    now=ms(self.clock),
                )
            return "stored" if held else "duplicate"
        try:
            opened = open_envelope(envelope, recipient_keys=keys, sender_sign_key=sender.sign_key)
        except CryptoError as exc:
            raise errors.EnvelopeRejected(f"envelope does not open: {exc}") from exc
        return "stored" if await self._store(opened) else "duplicate"

    async def _store(self, opened: OpenedEnvelope) -> bool:
        text = opened.body.get("text")
        if opened.kind != "message" or not isinstance(text, str):
            log.info("ignoring envelope %s of kind %s", opened.id, opened.kind)
            return False
        async with self.db.write() as conn:
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
                now=ms(self.clock),
            )
        if record is None:
            return False
        self.events.publish(opened.recipient, {"type": "message", "message": message_view(record)})
        return True

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
                    sender = await self.directory.resolve(envelope.sender, fresh=False)
                    if sender.sign_key is None:
                        raise errors.EnvelopeRejected("sender has no key")
                    opened = open_envelope(envelope, recipient_keys=keys, sender_sign_key=sender.sign_key)
                    opened_count += await self._store(opened)
                except (CryptoError, errors.FlameError, ValueError) as exc:
                    log.warning("dropping held envelope %s: %s", item.envelope_id, exc)
                async with self.db.write() as conn:
                    await node_messages.release(conn, item.seq)
