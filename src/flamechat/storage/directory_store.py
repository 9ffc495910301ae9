"""The directory's accounts, nodes and presence reports."""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.directory_schema import accounts, nodes, presence
from flamechat.storage.records import DirectoryAccount, DirectoryNode, PresenceEntry


def _account(row: object) -> DirectoryAccount:
    r = row._mapping  # type: ignore[attr-defined]
    return DirectoryAccount(
        username=r["username"],
        display_name=r["display_name"],
        password_hash=r["password_hash"],
        home_node=r["home_node"],
        sign_key=r["sign_key"],
        box_key=r["box_key"],
        binding_signature=r["binding_signature"],
        disabled=bool(r["disabled"]),
        title=r["title"],
        department=r["department"],
    )


async def get_account(conn: AsyncConnection, username: str) -> DirectoryAccount | None:
    row = (await conn.execute(select(accounts).where(accounts.c.username == username))).first()
    return None if row is None else _account(row)


async def list_accounts(conn: AsyncConnection) -> list[DirectoryAccount]:
    rows = await conn.execute(select(accounts).order_by(accounts.c.username))
    return [_account(r) for r in rows.all()]


async def create_account(
    conn: AsyncConnection,
    *,
    username: str,
    display_name: str,
    password_hash: str,
    home_node: str | None,
    now: int,
) -> None:
    await conn.execute(
        insert(accounts).values(
            username=username,
            display_name=display_name,
            password_hash=password_hash,
            home_node=home_node,
            disabled=0,
            created_at=now,
            updated_at=now,
        )
    )


async def update_account(conn: AsyncConnection, username: str, now: int, **values: object) -> None:
    await conn.execute(
        update(accounts).where(accounts.c.username == username).values(updated_at=now, **values)
    )


async def claim_home(conn: AsyncConnection, username: str, node_id: str, now: int) -> str | None:
    """Make ``node_id`` the user's home unless they have one; return the home they have now."""
    await conn.execute(
        update(accounts)
        .where(accounts.c.username == username, accounts.c.home_node.is_(None))
        .values(home_node=node_id, updated_at=now)
    )
    home: str | None = (
        await conn.execute(select(accounts.c.home_node).where(accounts.c.username == username))
    ).scalar()
    return home


async def get_node(conn: AsyncConnection, node_id: str) -> DirectoryNode | None:
    row = (await conn.execute(select(nodes).where(nodes.c.node_id == node_id))).first()
    return None if row is None else DirectoryNode(row.node_id, row.url, row.public_key, bool(row.relay))


async def list_nodes(conn: AsyncConnection) -> list[DirectoryNode]:
    rows = await conn.execute(select(nodes).order_by(nodes.c.node_id))
    return [DirectoryNode(r.node_id, r.url, r.public_key, bool(r.relay)) for r in rows.all()]


async def put_node(conn: AsyncConnection, node: DirectoryNode, now: int) -> None:
    result = await conn.execute(
        update(nodes)
        .where(nodes.c.node_id == node.node_id)
        .values(url=node.url, last_seen=now, relay=int(node.relay))
    )
    if result.rowcount == 0:
        await conn.execute(
            insert(nodes).values(
                node_id=node.node_id,
                url=node.url,
                public_key=node.public_key,
                relay=int(node.relay),
                registered_at=now,
                last_seen=now,
            )
        )


async def replace_presence(
    conn: AsyncConnection, node_id: str, entries: Iterable[PresenceEntry], now: int
) -> None:
    await conn.execute(delete(presence).where(presence.c.node_id == node_id))
    for entry in {e.username: e for e in entries}.values():
        await conn.execute(delete(presence).where(presence.c.username == entry.username))
        await conn.execute(
            insert(presence).values(
                username=entry.username,
                node_id=node_id,
                reported_at=now,
                status=entry.status,
                status_text=entry.status_text,
                hidden_from=json.dumps(sorted(entry.hidden_from)),
            )
        )


async def online_users(conn: AsyncConnection, since: int) -> dict[str, PresenceEntry]:
    rows = await conn.execute(select(presence).where(presence.c.reported_at >= since))
    return {
        r.username: PresenceEntry(r.username, r.status, r.status_text, tuple(json.loads(r.hidden_from)))
        for r in rows.all()
    }
