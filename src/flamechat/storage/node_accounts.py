"""Node-side accounts (cached verifiers, wrapped keys) and sessions."""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.node_messages import insert_ignore
from flamechat.storage.node_schema import local_accounts, sessions
from flamechat.storage.records import LocalAccount, SessionRecord


async def get_account(conn: AsyncConnection, username: str) -> LocalAccount | None:
    row = (await conn.execute(select(local_accounts).where(local_accounts.c.username == username))).first()
    if row is None:
        return None
    return LocalAccount(
        username=row.username,
        verifier=row.verifier,
        wrapped_keys=row.wrapped_keys,
        sign_key=row.sign_key,
        box_key=row.box_key,
        keys_published=bool(row.keys_published),
    )


async def put_account(conn: AsyncConnection, account: LocalAccount, now: int) -> LocalAccount:
    """Store a new account unless the user already has one; return the stored one.

    Never overwrites: two first logins at once (or a login racing the CLI)
    must not leave the node with keys other than those it published, so the
    second writer gets the first one's account back and must use its keys.
    """
    await conn.execute(
        insert_ignore(conn, local_accounts).values(
            username=account.username,
            verifier=account.verifier,
            wrapped_keys=account.wrapped_keys,
            sign_key=account.sign_key,
            box_key=account.box_key,
            keys_published=int(account.keys_published),
            created_at=now,
            updated_at=now,
        )
    )
    stored = await get_account(conn, account.username)
    assert stored is not None  # inserted, or there already
    return stored


async def set_published(conn: AsyncConnection, username: str, published: bool) -> None:
    await conn.execute(
        update(local_accounts)
        .where(local_accounts.c.username == username)
        .values(keys_published=int(published))
    )


async def unpublished_accounts(conn: AsyncConnection) -> list[LocalAccount]:
    rows = await conn.execute(select(local_accounts.c.username).where(local_accounts.c.keys_published == 0))
    found = [await get_account(conn, r.username) for r in rows.all()]
    return [a for a in found if a is not None]


async def delete_account(conn: AsyncConnection, username: str) -> None:
    await conn.execute(delete(sessions).where(sessions.c.username == username))
    await conn.execute(delete(local_accounts).where(local_accounts.c.username == username))


async def hosted_usernames(conn: AsyncConnection) -> set[str]:
    return set((await conn.execute(select(local_accounts.c.username))).scalars())


async def add_session(conn: AsyncConnection, record: SessionRecord, now: int) -> None:
    await conn.execute(
        insert(sessions).values(
            lookup_id=record.lookup_id,
            username=record.username,
            csrf_token=record.csrf_token,
            wrapped_keys=record.wrapped_keys,
            created_at=now,
            expires_at=record.expires_at,
        )
    )


async def get_session(conn: AsyncConnection, lookup_id: str, now: int) -> SessionRecord | None:
    row = (
        await conn.execute(
            select(sessions).where(sessions.c.lookup_id == lookup_id, sessions.c.expires_at > now)
        )
    ).first()
    if row is None:
        return None
    return SessionRecord(
        lookup_id=row.lookup_id,
        username=row.username,
        csrf_token=row.csrf_token,
        wrapped_keys=row.wrapped_keys,
        expires_at=row.expires_at,
    )


async def delete_session(conn: AsyncConnection, lookup_id: str) -> None:
    await conn.execute(delete(sessions).where(sessions.c.lookup_id == lookup_id))


async def delete_expired_sessions(conn: AsyncConnection, now: int) -> None:
    await conn.execute(delete(sessions).where(sessions.c.expires_at <= now))


async def count_sessions(conn: AsyncConnection, username: str, now: int) -> int:
    rows = await conn.execute(
        select(sessions.c.lookup_id).where(sessions.c.username == username, sessions.c.expires_at > now)
    )
    return len(rows.all())
