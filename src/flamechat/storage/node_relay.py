"""Envelopes held by this node as a relay, for users of other nodes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.node_schema import relay_store
from flamechat.storage.records import RelayedEnvelope


@dataclass(frozen=True)
class Held:
    """What a relay holds, unexpired, for one recipient and from one depositor."""

    for_recipient: int
    from_depositor: int
    bytes_from_depositor: int


async def counts(conn: AsyncConnection, *, recipient: str, depositor: str, now: int) -> Held:
    """How much is held for ``recipient`` and from ``depositor``, leaving out what has
    expired (it is deleted at the next purge, and must not hold a quota until then)."""
    live = relay_store.c.expires_at > now
    for_recipient = (
        await conn.execute(
            select(func.count()).select_from(relay_store).where(relay_store.c.recipient == recipient, live)
        )
    ).scalar()
    row = (
        await conn.execute(
            select(func.count(), func.coalesce(func.sum(relay_store.c.size), 0)).where(
                relay_store.c.depositor == depositor, live
            )
        )
    ).one()
    return Held(int(for_recipient or 0), int(row[0] or 0), int(row[1] or 0))


async def holds(conn: AsyncConnection, envelope_id: str, recipient: str) -> bool:
    row = (
        await conn.execute(
            select(relay_store.c.seq).where(
                relay_store.c.envelope_id == envelope_id, relay_store.c.recipient == recipient
            )
        )
    ).first()
    return row is not None


async def deposit(
    conn: AsyncConnection,
    *,
    envelope_id: str,
    recipient: str,
    recipient_node: str,
    depositor: str,
    payload: str,
    now: int,
    expires_at: int,
) -> None:
    await conn.execute(
        insert(relay_store).values(
            envelope_id=envelope_id,
            recipient=recipient,
            recipient_node=recipient_node,
            depositor=depositor,
            payload=payload,
            size=len(payload),
            deposited_at=now,
            expires_at=expires_at,
        )
    )


async def pending_for(
    conn: AsyncConnection, recipient_node: str, now: int, limit: int
) -> list[RelayedEnvelope]:
    rows = await conn.execute(
        select(relay_store)
        .where(relay_store.c.recipient_node == recipient_node, relay_store.c.expires_at > now)
        .order_by(relay_store.c.seq)
        .limit(limit)
    )
    return [RelayedEnvelope(r.seq, r.envelope_id, r.recipient, r.payload) for r in rows.all()]


async def acknowledge(conn: AsyncConnection, recipient_node: str, seqs: list[int]) -> int:
    result = await conn.execute(
        delete(relay_store).where(relay_store.c.recipient_node == recipient_node, relay_store.c.seq.in_(seqs))
    )
    return int(result.rowcount or 0)


async def purge_expired(conn: AsyncConnection, now: int) -> int:
    result = await conn.execute(delete(relay_store).where(relay_store.c.expires_at <= now))
    return int(result.rowcount or 0)
