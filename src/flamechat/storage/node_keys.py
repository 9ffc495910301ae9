"""Key continuity: the local users who must confirm another user's new keys."""

from __future__ import annotations

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.node_schema import key_pins, key_warnings, local_accounts, messages, verified_keys
from flamechat.storage.records import KeyWarning

Keys = tuple[bytes, bytes]  # (Ed25519 signing key, X25519 box key)


async def pins(conn: AsyncConnection, usernames: list[str]) -> dict[str, Keys]:
    if not usernames:
        return {}
    rows = await conn.execute(select(key_pins).where(key_pins.c.username.in_(usernames)))
    return {r.username: (r.sign_key, r.box_key) for r in rows}


async def pin(conn: AsyncConnection, username: str, keys: Keys, *, now: int) -> None:
    values = {"sign_key": keys[0], "box_key": keys[1], "pinned_at": now}
    result = await conn.execute(key_pins.update().where(key_pins.c.username == username).values(values))
    if result.rowcount == 0:
        await conn.execute(insert(key_pins).values(username=username, **values))


async def correspondents_of(conn: AsyncConnection, username: str) -> list[str]:
    """Users of this node (other than ``username``) who have a conversation with ``username``."""
    wrote = exists().where(messages.c.owner == local_accounts.c.username, messages.c.peer == username)
    rows = await conn.execute(
        select(local_accounts.c.username).where(local_accounts.c.username != username, wrote)
    )
    return sorted(rows.scalars())


async def warn(
    conn: AsyncConnection, viewers: list[str], username: str, old: bytes, new: bytes, *, now: int
) -> None:
    """Record that ``viewers`` have not confirmed ``username``'s change from ``old`` to ``new``.

    A warning already standing keeps its first old key: confirming means
    accepting the newest key against the last one the viewer trusted.
    """
    for viewer in viewers:
        standing = await conn.execute(
            select(key_warnings.c.viewer).where(
                key_warnings.c.viewer == viewer, key_warnings.c.username == username
            )
        )
        if standing.first() is None:
            await conn.execute(
                insert(key_warnings).values(
                    viewer=viewer, username=username, old_sign_key=old, new_sign_key=new, changed_at=now
                )
            )
        else:
            await conn.execute(
                key_warnings.update()
                .where(key_warnings.c.viewer == viewer, key_warnings.c.username == username)
                .values(new_sign_key=new, changed_at=now)
            )


async def warnings_for(conn: AsyncConnection, viewer: str) -> dict[str, KeyWarning]:
    rows = await conn.execute(select(key_warnings).where(key_warnings.c.viewer == viewer))
    return {
        r.username: KeyWarning(r.viewer, r.username, r.old_sign_key, r.new_sign_key, r.changed_at)
        for r in rows
    }


async def confirm(conn: AsyncConnection, viewer: str, username: str) -> bool:
    """Drop ``viewer``'s warning about ``username``; False if there was none."""
    result = await conn.execute(
        delete(key_warnings).where(key_warnings.c.viewer == viewer, key_warnings.c.username == username)
    )
    return bool(result.rowcount)


async def mark_verified(conn: AsyncConnection, viewer: str, username: str, keys: Keys, *, now: int) -> None:
    await unmark_verified(conn, viewer, username)
    await conn.execute(
        insert(verified_keys).values(
            viewer=viewer, username=username, sign_key=keys[0], box_key=keys[1], verified_at=now
        )
    )


async def unmark_verified(conn: AsyncConnection, viewer: str, username: str) -> None:
    await conn.execute(
        delete(verified_keys).where(verified_keys.c.viewer == viewer, verified_keys.c.username == username)
    )


async def verified_for(conn: AsyncConnection, viewer: str) -> dict[str, Keys]:
    """The keys ``viewer`` verified, per user (whether or not they are still current)."""
    rows = await conn.execute(select(verified_keys).where(verified_keys.c.viewer == viewer))
    return {r.username: (r.sign_key, r.box_key) for r in rows}
