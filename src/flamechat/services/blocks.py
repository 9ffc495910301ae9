"""Blocking: a user's block list and the node operator's blocks.

A blocked sender's messages, files and receipts are dropped at the
recipient's node and the sender is told nothing (the node answers as if it
stored them). The blocker's status is hidden from the blocked person.
Operator blocks apply node-wide: a blocked node's federation requests are
refused, and its users' envelopes are dropped however they arrive (through a
relay too); a blocked user's envelopes are dropped for every user here.
"""

from __future__ import annotations

from flamechat.protocol import errors
from flamechat.services.clock import Clock, ms
from flamechat.storage import node_social
from flamechat.storage.database import Database

ADMIN_CACHE_SECONDS = 2.0


class NodeBlocked(errors.Forbidden):
    code = "node_blocked"


class BlockService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._admin: set[tuple[str, str]] = set()
        self._admin_at = float("-inf")
        # Users' block lists, read once: this service is their only writer, and
        # every message sent or received asks them.
        self._lists: dict[str, set[str]] | None = None

    async def _blocks(self) -> dict[str, set[str]]:
        if self._lists is None:
            async with self.db.read() as conn:
                self._lists = await node_social.all_blocks(conn)
        return self._lists

    async def block(self, owner: str, username: str) -> None:
        if owner == username:
            raise errors.InvalidRequest("you cannot block yourself", field="username")
        lists = await self._blocks()
        async with self.db.write() as conn:
            await node_social.block(conn, owner, username, ms(self.clock))
        lists.setdefault(owner, set()).add(username)

    async def unblock(self, owner: str, username: str) -> None:
        lists = await self._blocks()
        async with self.db.write() as conn:
            await node_social.unblock(conn, owner, username)
        lists.get(owner, set()).discard(username)

    async def blocked_by(self, owner: str) -> list[str]:
        return sorted((await self._blocks()).get(owner, ()))

    async def is_blocked(self, owner: str, username: str) -> bool:
        return username in (await self._blocks()).get(owner, ())

    async def all_blocks(self) -> dict[str, set[str]]:
        return {owner: set(blocked) for owner, blocked in (await self._blocks()).items()}

    async def drops(self, recipient: str, sender: str) -> bool:
        """Should an envelope from ``sender`` to ``recipient`` be silently dropped?"""
        return ("user", sender) in await self._admin_blocks() or await self.is_blocked(recipient, sender)

    async def node_blocked(self, node_id: str | None) -> bool:
        """Has the operator blocked ``node_id`` (a requester, or a sender's home node)?"""
        return node_id is not None and ("node", node_id) in await self._admin_blocks()

    async def refuse_node(self, node_id: str) -> None:
        if await self.node_blocked(node_id):
            raise NodeBlocked("this node refuses requests from your node")

    async def _admin_blocks(self) -> set[tuple[str, str]]:
        # The operator changes these from the CLI while the node runs: re-read
        # them at most every couple of seconds rather than on every request.
        if self.clock.now() - self._admin_at > ADMIN_CACHE_SECONDS:
            async with self.db.read() as conn:
                self._admin = await node_social.admin_blocked(conn)
            self._admin_at = self.clock.now()
        return self._admin

    # --- operator (CLI) ----------------------------------------------------------

    async def admin_block(self, kind: str, value: str) -> None:
        async with self.db.write() as conn:
            await node_social.admin_block(conn, kind, value, ms(self.clock))
        self._admin_at = float("-inf")

    async def admin_unblock(self, kind: str, value: str) -> None:
        async with self.db.write() as conn:
            await node_social.admin_unblock(conn, kind, value)
        self._admin_at = float("-inf")

    async def admin_list(self) -> list[tuple[str, str]]:
        return sorted(await self._admin_blocks())
