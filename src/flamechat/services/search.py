"""Search: people (directory cache and cached profiles) and the user's own messages.

Messages are searched through a :class:`MessageIndex`; SQLite's FTS5 is the
default (``storage/node_search.py``), and a PostgreSQL backend would provide
the same call.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.services.directory_view import DirectoryView
from flamechat.services.messaging import message_view
from flamechat.services.profiles import ProfileService
from flamechat.storage import node_search
from flamechat.storage.database import Database
from flamechat.storage.records import MessageRecord

MAX_RESULTS = 50


class MessageIndex(Protocol):
    async def __call__(
        self,
        conn: AsyncConnection,
        owner: str,
        query: str,
        *,
        peer: str | None,
        since: int | None,
        until: int | None,
        limit: int,
    ) -> list[tuple[MessageRecord, str]]: ...


class SearchService:
    def __init__(
        self,
        db: Database,
        directory: DirectoryView,
        profiles: ProfileService,
        index: MessageIndex = node_search.search,
    ) -> None:
        self.db = db
        self.directory = directory
        self.profiles = profiles
        self.index = index

    async def people(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        words = [w for w in query.lower().split() if w]
        if not words:
            return []
        extra = {p.get("username"): p for p in await self.profiles.cached_profiles()}
        found = []
        for user in await self.directory.cached_users():
            profile = extra.get(user.username, {})
            fields = {
                "username": user.username,
                "display_name": str(profile.get("display_name") or user.display_name),
                "title": str(profile.get("title") or user.title),
                "department": str(profile.get("department") or user.department),
            }
            haystack = " ".join(fields.values()).lower()
            if all(w in haystack for w in words):
                rank = 0 if user.username.startswith(words[0]) else 1
                found.append((rank, user.username, fields))
        found.sort(key=lambda item: (item[0], item[1]))
        return [fields for _rank, _name, fields in found[:limit]]

    async def messages(
        self,
        owner: str,
        query: str,
        *,
        peer: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        limit = max(1, min(limit, MAX_RESULTS))
        async with self.db.read() as conn:
            hits = await self.index(conn, owner, query, peer=peer, since=since, until=until, limit=limit)
        return [{"message": message_view(record), "snippet": snippet} for record, snippet in hits]
