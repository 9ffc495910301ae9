"""Presence: who on this node has a tab open, told to local tabs, the directory
and, while the directory is down, learned straight from peer nodes.

A user is online while at least one of their tabs holds the live event
stream open; closing the last tab makes them offline at once locally, and
for everyone else at the next report (``interval``) or, at worst, when the
directory's presence TTL runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from flamechat.protocol import errors
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.ports import PeerPort, TransportError
from flamechat.storage.records import KnownUser

log = logging.getLogger(__name__)

OUTAGE_POLL = 2.0
PEER_QUERIES_AT_ONCE = 8


class PresenceService:
    def __init__(
        self,
        events: EventHub,
        directory: DirectoryView,
        peers: PeerPort,
        *,
        node_id: str,
        interval: float,
    ) -> None:
        self.events = events
        self.directory = directory
        self.peers = peers
        self.node_id = node_id
        self.interval = interval
        self._changed = asyncio.Event()
        events.on_presence_change(self._local_change)

    def _local_change(self, username: str, online: bool) -> None:
        self.events.broadcast({"type": "presence", "username": username, "online": online})
        self._changed.set()

    def online(self) -> list[str]:
        """Users of this node with a live tab (what peers and the directory are told)."""
        return sorted(self.events.connected())

    async def round(self) -> None:
        """One report-and-refresh; falls back to asking peers if the directory is down."""
        for username in self.online():
            await self.directory.set_online(username, True)
        try:
            await self.directory.report_presence(self.online())
            await self.directory.refresh()
        except errors.DirectoryUnavailable:
            await self.poll_peers()
        except errors.FlameError as exc:
            log.info("presence round failed: %s", exc.message)

    async def poll_peers(self) -> None:
        """Ask each known node who of its users is online (bounded, concurrent)."""
        by_node: dict[str, list[KnownUser]] = defaultdict(list)
        for user in await self.directory.cached_users():
            if user.node_url and user.home_node != self.node_id:
                by_node[user.node_url].append(user)
        limit = asyncio.Semaphore(PEER_QUERIES_AT_ONCE)

        async def ask(url: str, users: list[KnownUser]) -> None:
            async with limit:
                try:
                    answer = await self.peers.presence(url)
                    online = set(answer.get("online", []))
                except TransportError:
                    online = set()  # unreachable node: its users are not reachable either
            for user in users:
                await self.directory.set_online(user.username, user.username in online)

        await asyncio.gather(*(ask(url, users) for url, users in by_node.items()))

    async def run(self) -> None:
        """Report now, on every change, and every ``interval`` seconds (more often
        while the directory is down, so that its return is noticed quickly)."""
        while True:
            self._changed.clear()
            try:
                await self.round()
            except Exception:
                log.exception("presence round failed")
            wait = self.interval if self.directory.reachable is not False else min(self.interval, OUTAGE_POLL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)
