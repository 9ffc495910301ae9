"""Edits and deletions of messages: the history rows they change, and the amends
that arrived before the message they name (``early_amends``).

The search index follows the ``body`` column by itself (the triggers of
migration 0009): an edit re-indexes the message, a deletion empties it.
"""

from __future__ import annotations

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.node_messages import insert_ignore, message_record
from flamechat.storage.node_schema import early_amends, messages
from flamechat.storage.records import EarlyAmend, MessageRecord

m = messages.c


async def edit(
    conn: AsyncConnection, owner: str, message_id: str, text: str, at: int
) -> MessageRecord | None:
    """Give a text message a new body, unless it is deleted or an edit as new or newer
    (by its ``at``) already did; the changed row, or ``None``."""
    row = (
        await conn.execute(
            update(messages)
            .where(
                m.owner == owner,
                m.id == message_id,
                m.kind == "text",
                m.deleted_at.is_(None),
                or_(m.edited_at.is_(None), m.edited_at < at),
            )
            .values(body=text, edited_at=at)
            .returning(*messages.c)
        )
    ).first()
    return None if row is None else message_record(row)


async def mark_deleted(conn: AsyncConnection, owner: str, message_id: str, at: int) -> MessageRecord | None:
    """Empty a message deleted for everyone (kept as a marker in its place); the
    changed row, or ``None`` if it was deleted already. An unread one counts as read."""
    row = (
        await conn.execute(
            update(messages)
            .where(m.owner == owner, m.id == message_id, m.deleted_at.is_(None))
            .values(
                body="",
                deleted_at=at,
                state=case((and_(m.direction == "in", m.state == "delivered"), "read"), else_=m.state),
            )
            .returning(*messages.c)
        )
    ).first()
    return None if row is None else message_record(row)


async def remove(conn: AsyncConnection, owner: str, message_id: str) -> bool:
    """Delete a message from ``owner``'s history (deleted for them only)."""
    result = await conn.execute(delete(messages).where(m.owner == owner, m.id == message_id))
    return bool(result.rowcount)


# --- amends that came first -----------------------------------------------------------


async def keep_early(
    conn: AsyncConnection,
    *,
    owner: str,
    peer: str,
    message_id: str,
    action: str,
    text: str | None,
    at: int,
    now: int,
    most: int,
) -> None:
    """Keep an amend whose message is not here (not yet, or ``remove``d); of two for
    one message the newer wins, and ``remove`` over all. At most ``most`` per
    (owner, peer): the oldest kept go first."""
    e = early_amends.c
    existing = (
        await conn.execute(select(e.action, e.amended_at).where(e.owner == owner, e.message_id == message_id))
    ).first()
    if existing is not None:
        if existing.action == "remove" or (action != "remove" and existing.amended_at >= at):
            return
        await conn.execute(delete(early_amends).where(e.owner == owner, e.message_id == message_id))
    await conn.execute(
        insert_ignore(conn, early_amends),
        {
            "owner": owner,
            "peer": peer,
            "message_id": message_id,
            "action": action,
            "text": text,
            "amended_at": at,
            "stored_at": now,
        },
    )
    overflow = (
        select(e.message_id)
        .where(e.owner == owner, e.peer == peer)
        .order_by(e.stored_at.desc(), e.amended_at.desc())
        .offset(most)
    )
    await conn.execute(delete(early_amends).where(e.owner == owner, e.message_id.in_(overflow)))


async def take_early(conn: AsyncConnection, owner: str, message_id: str, peer: str) -> EarlyAmend | None:
    """The amend kept for a message that has just arrived from ``peer``, removed."""
    e = early_amends.c
    row = (
        await conn.execute(
            delete(early_amends)
            .where(e.owner == owner, e.message_id == message_id, e.peer == peer)
            .returning(e.action, e.text, e.amended_at)
        )
    ).first()
    return None if row is None else EarlyAmend(action=row.action, text=row.text, at=row.amended_at)


async def count_early(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(early_amends))).scalar() or 0)


async def drop_early_before(conn: AsyncConnection, before: int) -> int:
    """Forget amends kept since before ``before`` (their message never came)."""
    result = await conn.execute(delete(early_amends).where(early_amends.c.stored_at < before))
    return int(result.rowcount or 0)
