"""Messages waiting, unsealed, for a recipient who has no keys yet (``waiting_sends``).

Every function that removes rows answers the rows it removed (``DELETE …
RETURNING``), so that a release and an expiry running at the same moment
never both act on one message.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.node_schema import waiting_sends
from flamechat.storage.records import WaitingSend

_w = waiting_sends.c


def _record(row: object) -> WaitingSend:
    r = row._mapping  # type: ignore[attr-defined]
    return WaitingSend(
        owner=r["owner"],
        peer=r["peer"],
        message_id=r["message_id"],
        kind=r["kind"],
        body=r["body"],
        sent_at=r["sent_at"],
        expires_at=r["expires_at"],
    )


async def add(
    conn: AsyncConnection,
    *,
    owner: str,
    peer: str,
    message_id: str,
    kind: str,
    body: str,
    sent_at: int,
    now: int,
    expires_at: int,
) -> None:
    await conn.execute(
        insert(waiting_sends).values(
            owner=owner,
            peer=peer,
            message_id=message_id,
            kind=kind,
            body=body,
            sent_at=sent_at,
            created_at=now,
            expires_at=expires_at,
        )
    )


async def pairs(conn: AsyncConnection) -> set[tuple[str, str]]:
    """Every (owner, peer) with a message waiting."""
    rows = await conn.execute(select(_w.owner, _w.peer).distinct())
    return {(owner, peer) for owner, peer in rows.all()}


async def next_expiry(conn: AsyncConnection) -> int | None:
    """When the first waiting message's time is over (``None``: nothing waits)."""
    value = await conn.scalar(select(func.min(_w.expires_at)))
    return None if value is None else int(value)


async def for_pair(conn: AsyncConnection, owner: str, peer: str, limit: int) -> list[WaitingSend]:
    """The oldest ``limit`` messages ``owner`` wrote to ``peer``, in the order they were written."""
    rows = await conn.execute(
        select(waiting_sends)
        .where(_w.owner == owner, _w.peer == peer)
        .order_by(_w.sent_at, _w.seq)
        .limit(limit)
    )
    return [_record(r) for r in rows.all()]


async def take(conn: AsyncConnection, owner: str, message_ids: Collection[str]) -> set[str]:
    """Remove these of ``owner``'s waiting messages; the ids that were still there."""
    if not message_ids:
        return set()
    rows = await conn.execute(
        delete(waiting_sends)
        .where(_w.owner == owner, _w.message_id.in_(list(message_ids)))
        .returning(_w.message_id)
    )
    return {str(r[0]) for r in rows.all()}


async def take_expired(conn: AsyncConnection, now: int) -> list[WaitingSend]:
    """Remove and answer the messages whose time to wait is over."""
    rows = await conn.execute(delete(waiting_sends).where(_w.expires_at <= now).returning(*waiting_sends.c))
    return [_record(r) for r in rows.all()]


async def take_for_peer(conn: AsyncConnection, peer: str) -> list[WaitingSend]:
    """Remove and answer every message waiting for ``peer`` (whose account is gone)."""
    rows = await conn.execute(delete(waiting_sends).where(_w.peer == peer).returning(*waiting_sends.c))
    return [_record(r) for r in rows.all()]


async def set_body(conn: AsyncConnection, owner: str, message_id: str, body: str) -> bool:
    """Change the unsealed body of a message that still waits (an edit); False if it
    waits no more (sealed and queued meanwhile)."""
    result = await conn.execute(
        update(waiting_sends).where(_w.owner == owner, _w.message_id == message_id).values(body=body)
    )
    return bool(result.rowcount)
