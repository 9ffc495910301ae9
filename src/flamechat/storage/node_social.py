"""Status, block lists, operator blocks and signed profiles on a node."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.node_schema import admin_blocks, blocks, profiles, user_status


@dataclass(frozen=True)
class ChosenStatus:
    status: str  # online | away | busy | invisible
    status_text: str


@dataclass(frozen=True)
class StoredProfile:
    username: str
    document: str
    signature: bytes
    avatar: bytes | None
    fetched_at: int


async def get_status(conn: AsyncConnection, username: str) -> ChosenStatus:
    row = (await conn.execute(select(user_status).where(user_status.c.username == username))).first()
    return ChosenStatus("online", "") if row is None else ChosenStatus(row.status, row.status_text)


async def all_statuses(conn: AsyncConnection) -> dict[str, ChosenStatus]:
    rows = await conn.execute(select(user_status))
    return {r.username: ChosenStatus(r.status, r.status_text) for r in rows.all()}


async def set_status(conn: AsyncConnection, username: str, chosen: ChosenStatus, now: int) -> None:
    values = {"status": chosen.status, "status_text": chosen.status_text, "updated_at": now}
    result = await conn.execute(update(user_status).where(user_status.c.username == username).values(values))
    if result.rowcount == 0:
        await conn.execute(insert(user_status).values(username=username, **values))


# --- block lists -------------------------------------------------------------------------


async def block(conn: AsyncConnection, owner: str, blocked: str, now: int) -> None:
    if not await is_blocked(conn, owner, blocked):
        await conn.execute(insert(blocks).values(owner=owner, blocked=blocked, created_at=now))


async def unblock(conn: AsyncConnection, owner: str, blocked: str) -> None:
    await conn.execute(delete(blocks).where(blocks.c.owner == owner, blocks.c.blocked == blocked))


async def is_blocked(conn: AsyncConnection, owner: str, blocked: str) -> bool:
    row = (
        await conn.execute(select(blocks.c.owner).where(blocks.c.owner == owner, blocks.c.blocked == blocked))
    ).first()
    return row is not None


async def blocked_by(conn: AsyncConnection, owner: str) -> list[str]:
    rows = await conn.execute(
        select(blocks.c.blocked).where(blocks.c.owner == owner).order_by(blocks.c.blocked)
    )
    return list(rows.scalars())


async def all_blocks(conn: AsyncConnection) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in (await conn.execute(select(blocks))).all():
        found.setdefault(row.owner, set()).add(row.blocked)
    return found


# --- operator blocks -------------------------------------------------------------------


async def admin_block(conn: AsyncConnection, kind: str, value: str, now: int) -> None:
    exists = (
        await conn.execute(
            select(admin_blocks.c.kind).where(admin_blocks.c.kind == kind, admin_blocks.c.value == value)
        )
    ).first()
    if exists is None:
        await conn.execute(insert(admin_blocks).values(kind=kind, value=value, created_at=now))


async def admin_unblock(conn: AsyncConnection, kind: str, value: str) -> None:
    await conn.execute(delete(admin_blocks).where(admin_blocks.c.kind == kind, admin_blocks.c.value == value))


async def admin_blocked(conn: AsyncConnection) -> set[tuple[str, str]]:
    return {(r.kind, r.value) for r in (await conn.execute(select(admin_blocks))).all()}


# --- profiles ------------------------------------------------------------------------------


async def get_profile(conn: AsyncConnection, username: str) -> StoredProfile | None:
    row = (await conn.execute(select(profiles).where(profiles.c.username == username))).first()
    if row is None:
        return None
    return StoredProfile(row.username, row.document, row.signature, row.avatar, row.fetched_at)


async def put_profile(conn: AsyncConnection, profile: StoredProfile) -> None:
    values = {
        "document": profile.document,
        "signature": profile.signature,
        "avatar": profile.avatar,
        "fetched_at": profile.fetched_at,
    }
    result = await conn.execute(
        update(profiles).where(profiles.c.username == profile.username).values(values)
    )
    if result.rowcount == 0:
        await conn.execute(insert(profiles).values(username=profile.username, **values))


async def touch_profile(conn: AsyncConnection, username: str, now: int) -> None:
    await conn.execute(update(profiles).where(profiles.c.username == username).values(fetched_at=now))


async def all_profiles(conn: AsyncConnection) -> list[StoredProfile]:
    rows = await conn.execute(select(profiles))
    return [StoredProfile(r.username, r.document, r.signature, r.avatar, r.fetched_at) for r in rows.all()]
