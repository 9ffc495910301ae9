"""What a node remembers of the directory: users, nodes, pinned facts."""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.node_schema import known_nodes, known_users, node_facts
from flamechat.storage.records import KnownNode, KnownUser


async def get_fact(conn: AsyncConnection, key: str) -> str | None:
    row = (await conn.execute(select(node_facts.c.value).where(node_facts.c.key == key))).first()
    return None if row is None else str(row.value)


async def set_fact(conn: AsyncConnection, key: str, value: str) -> None:
    result = await conn.execute(update(node_facts).where(node_facts.c.key == key).values(value=value))
    if result.rowcount == 0:
        await conn.execute(insert(node_facts).values(key=key, value=value))


def _user(row: object) -> KnownUser:
    return KnownUser(
        username=row.username,  # type: ignore[attr-defined]
        display_name=row.display_name,  # type: ignore[attr-defined]
        home_node=row.home_node,  # type: ignore[attr-defined]
        node_url=row.node_url,  # type: ignore[attr-defined]
        sign_key=row.sign_key,  # type: ignore[attr-defined]
        box_key=row.box_key,  # type: ignore[attr-defined]
        online=bool(row.online),  # type: ignore[attr-defined]
        fetched_at=row.fetched_at,  # type: ignore[attr-defined]
        status=row.status,  # type: ignore[attr-defined]
        status_text=row.status_text,  # type: ignore[attr-defined]
        title=row.title,  # type: ignore[attr-defined]
        department=row.department,  # type: ignore[attr-defined]
        hidden_from=tuple(json.loads(row.hidden_from)),  # type: ignore[attr-defined]
    )


async def get_user(conn: AsyncConnection, username: str) -> KnownUser | None:
    row = (await conn.execute(select(known_users).where(known_users.c.username == username))).first()
    return None if row is None else _user(row)


async def get_users(conn: AsyncConnection, usernames: Iterable[str]) -> list[KnownUser]:
    names = list(usernames)
    if not names:
        return []
    rows = await conn.execute(select(known_users).where(known_users.c.username.in_(names)))
    return [_user(r) for r in rows.all()]


async def list_users(conn: AsyncConnection) -> list[KnownUser]:
    rows = await conn.execute(select(known_users).order_by(known_users.c.username))
    return [_user(r) for r in rows.all()]


async def put_users(conn: AsyncConnection, users: Iterable[KnownUser]) -> None:
    for user in users:
        values = {
            "display_name": user.display_name,
            "home_node": user.home_node,
            "node_url": user.node_url,
            "sign_key": user.sign_key,
            "box_key": user.box_key,
            "online": int(user.online),
            "fetched_at": user.fetched_at,
            "status": user.status,
            "status_text": user.status_text,
            "title": user.title,
            "department": user.department,
            "hidden_from": json.dumps(list(user.hidden_from)),
        }
        result = await conn.execute(
            update(known_users).where(known_users.c.username == user.username).values(values)
        )
        if result.rowcount == 0:
            await conn.execute(insert(known_users).values(username=user.username, **values))


async def get_node(conn: AsyncConnection, node_id: str) -> KnownNode | None:
    row = (await conn.execute(select(known_nodes).where(known_nodes.c.node_id == node_id))).first()
    return None if row is None else KnownNode(row.node_id, row.url, row.public_key, bool(row.relay))


async def list_nodes(conn: AsyncConnection) -> list[KnownNode]:
    rows = await conn.execute(select(known_nodes).order_by(known_nodes.c.node_id))
    return [KnownNode(r.node_id, r.url, r.public_key, bool(r.relay)) for r in rows.all()]


async def put_node(conn: AsyncConnection, node: KnownNode, now: int) -> None:
    values = {"url": node.url, "public_key": node.public_key, "fetched_at": now, "relay": int(node.relay)}
    result = await conn.execute(
        update(known_nodes).where(known_nodes.c.node_id == node.node_id).values(values)
    )
    if result.rowcount == 0:
        await conn.execute(insert(known_nodes).values(node_id=node.node_id, **values))
