"""Presence and status: who on this node has a tab open and how they want to
appear (online, away, busy, invisible), told to local tabs, the directory and,
while the directory is down, learned straight from peer nodes.

A user is online while at least one of their tabs is open: it holds the live
event stream, or polls, and answers heartbeats (``EventHub``). Closing the
last tab makes them offline at once locally; a tab that vanished without a
word (a laptop shut, the network gone) is dropped once it has not been heard
from for ``tab_timeout`` seconds. A
local change is reported to the directory and pushed straight to the other
nodes that host users (``PUT /federation/v1/presence``), so their viewers
see it within a round trip; every ``interval`` the node also reports and
polls the directory, which covers a lost push, and a node that dies without
a word has its users shown offline when the directory's presence TTL runs
out. "invisible" is reported as offline. A user's status is hidden from
everyone on their block list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from pydantic import ValidationError

from flamechat.protocol import errors, models
from flamechat.services.blocks import BlockService
from flamechat.services.clock import Clock, ms
from flamechat.services.directory import hidden_from_node
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.ports import PeerPort, TransportError
from flamechat.storage import node_accounts, node_social
from flamechat.storage.database import Database
from flamechat.storage.node_social import ChosenStatus
from flamechat.storage.records import KnownUser, PresenceEntry

log = logging.getLogger(__name__)

OUTAGE_POLL = 2.0
PEER_QUERIES_AT_ONCE = 8
CHOSEN = ("online", "away", "busy", "invisible")


class PresenceService:
    def __init__(
        self,
        db: Database,
        events: EventHub,
        directory: DirectoryView,
        peers: PeerPort,
        blocks: BlockService,
        clock: Clock,
        *,
        node_id: str,
        interval: float,
    ) -> None:
        self.db = db
        self.events = events
        self.directory = directory
        self.peers = peers
        self.blocks = blocks
        self.clock = clock
        self.node_id = node_id
        self.interval = interval
        self._changed = asyncio.Event()
        self._announce = False
        self._pushes: set[asyncio.Task[None]] = set()
        events.on_presence_change(lambda _username, _online: self.changed())

    def changed(self) -> None:
        """Something about local presence changed: publish it soon, and tell peers."""
        self._announce = True
        self._changed.set()

    async def set_status(self, username: str, status: str, status_text: str) -> ChosenStatus:
        if status not in CHOSEN:
            raise errors.InvalidRequest(f"status must be one of {', '.join(CHOSEN)}", field="status")
        chosen = ChosenStatus(status, status_text.strip()[:140])
        async with self.db.write() as conn:
            await node_social.set_status(conn, username, chosen, ms(self.clock))
        await self.publish_local()
        self.changed()
        return chosen

    async def status_of(self, username: str) -> ChosenStatus:
        async with self.db.read() as conn:
            return await node_social.get_status(conn, username)

    async def entries(self) -> list[PresenceEntry]:
        """This node's users as others may see them (invisible ones left out)."""
        connected = self.events.connected()
        async with self.db.read() as conn:
            statuses = await node_social.all_statuses(conn)
        blocks = await self.blocks.all_blocks()
        found = []
        for username in sorted(connected):
            chosen = statuses.get(username, ChosenStatus("online", ""))
            if chosen.status == "invisible":
                continue
            found.append(
                PresenceEntry(
                    username, chosen.status, chosen.status_text, tuple(sorted(blocks.get(username, ())))
                )
            )
        return found

    async def publish_local(self) -> None:
        """Update this node's own view of its users (and tell local tabs)."""
        entries = {e.username: e for e in await self.entries()}
        async with self.db.read() as conn:
            hosted = await node_accounts.hosted_usernames(conn)
        for username in hosted:
            await self.directory.set_presence(username, entries.get(username))

    async def round(self, *, announce: bool = False) -> None:
        """One publish-report-refresh; falls back to asking peers if the directory is down.

        With ``announce``, peers are told too, after the directory has the
        change (so a peer's next refresh from the directory cannot undo it)
        and after the refresh (so newly known nodes are told as well).
        """
        await self.publish_local()
        try:
            await self.directory.report_presence(await self.entries())
            await self.directory.refresh()
        except errors.DirectoryUnavailable:
            await self.poll_peers()
        except errors.FlameError as exc:
            log.info("presence round failed: %s", exc.message)
        finally:
            if announce:
                self._start_push()

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
                    items = answer.get("users")
                    entries = [peer_entry(item) for item in items] if isinstance(items, list) else []
                    online = {e.username: e for e in entries if e is not None}
                except TransportError:
                    online = {}  # unreachable node: its users are not reachable either
            for user in users:
                await self.directory.set_presence(user.username, online.get(user.username))

        await asyncio.gather(*(ask(url, users) for url, users in by_node.items()))

    def _start_push(self) -> None:
        push = asyncio.get_running_loop().create_task(self.push_to_peers())
        self._pushes.add(push)
        push.add_done_callback(self._pushes.discard)

    async def push_to_peers(self) -> None:
        """Send every other node that hosts users its view of ours (bounded,
        concurrent; a peer that cannot be reached learns it at its next poll)."""
        nodes = {
            user.home_node: user.node_url
            for user in await self.directory.cached_users()
            if user.home_node and user.node_url and user.home_node != self.node_id
        }
        limit = asyncio.Semaphore(PEER_QUERIES_AT_ONCE)

        async def push(node_id: str, url: str) -> None:
            async with limit:
                users = [
                    {
                        "username": e.username,
                        "status": e.status,
                        "status_text": e.status_text,
                        "hidden_from": list(e.hidden_from),
                    }
                    for e in await self.for_node(node_id)
                ]
                try:
                    await self.peers.push_presence(url, users)
                except TransportError as exc:
                    log.info("could not push presence to %s: %s", url, exc)

        await asyncio.gather(*(push(node_id, url) for node_id, url in nodes.items()))

    async def receive_push(self, node_id: str, entries: list[PresenceEntry]) -> None:
        """A peer's users as it shows them to us: those listed are online, the
        rest of its users offline. Only the sending node's own users are taken."""
        listed = {e.username: e for e in entries}
        for user in await self.directory.cached_users():
            if user.home_node == node_id:
                await self.directory.set_presence(user.username, listed.get(user.username))

    async def for_node(self, asking_node: str) -> list[PresenceEntry]:
        """Entries for a peer node: block lists cut down to that node's users. A user
        who blocks everyone there is left out (offline to that node), rather than
        trusting it to hide a status it was sent (a blocked person's own node); the
        directory answers by the same rule (``hidden_from_node``)."""
        theirs = {u.username for u in await self.directory.cached_users() if u.home_node == asking_node}
        return [
            PresenceEntry(e.username, e.status, e.status_text, tuple(u for u in e.hidden_from if u in theirs))
            for e in await self.entries()
            if not hidden_from_node(e.hidden_from, theirs)
        ]

    async def run(self) -> None:
        """Publish now, on every change, and every ``interval`` seconds; while the
        directory is down, every ``OUTAGE_POLL`` seconds at most, so that peers
        are asked for presence and the directory's return is noticed quickly."""
        while True:
            self._changed.clear()
            announce, self._announce = self._announce, False
            try:
                await self.round(announce=announce)
            except Exception:
                log.exception("presence round failed")
            await self._wait()

    async def _wait(self) -> None:
        """Until a local change, the next round, or — checked every ``OUTAGE_POLL``
        seconds — an outage of the directory that another call noticed (with a
        long ``interval`` this round would otherwise come only after it)."""
        if self._directory_down():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(self.interval, OUTAGE_POLL))
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.interval
        while (step := min(deadline - loop.time(), OUTAGE_POLL)) > 0:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=step)
            except TimeoutError:
                if self._directory_down():
                    return  # the directory went away: ask peers, and probe it, now
            else:
                return

    def _directory_down(self) -> bool:
        """Did the last call to the directory, by anyone on this node, fail?"""
        return self.directory.reachable is False


def peer_entry(item: object) -> PresenceEntry | None:
    """One user of a peer's presence answer, if it has the protocol's shape (a
    status it may have, a status text of at most 140 characters): whatever
    else a peer sends is not cached or shown. Fields it does not know are ignored."""
    if not isinstance(item, dict):
        return None
    known = {k: item[k] for k in ("username", "status", "status_text", "hidden_from") if k in item}
    try:
        checked = models.PresenceItem.model_validate(known)
    except ValidationError:
        return None
    return PresenceEntry(checked.username, checked.status, checked.status_text, tuple(checked.hidden_from))
