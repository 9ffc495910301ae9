"""Live events for a user's open browser tabs (fed to SSE), and who is connected.

Each subscriber gets a bounded queue; a subscriber too slow to keep up loses
the oldest events and is told to resynchronise (``resync``) rather than
letting memory grow. One process only: a multi-worker deployment fans out
through the database or Redis (see docs/architecture.md).

A user is connected while they have at least one live tab. A tab is live
while it is heard from: its live stream opening, then its heartbeats
(``PUT /api/v1/me/tabs/{tab}``, which the page sends in answer to the
stream's ``alive`` events, or on a timer while it polls instead). A stream
whose client vanished without closing its connection (a laptop shut, a cable
pulled) still looks open to the server until TCP gives up, minutes later;
a tab not heard from for ``tab_timeout`` seconds is dropped by :meth:`EventHub.sweep`
(its stream is ended), and its user goes offline if it was their last. The first
polling lease of a tab whose stream just ended is on probation (``PROBATION_SECONDS``)
until its second beat: a page being closed may send one beat as it dies.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flamechat.services.clock import Clock, SystemClock

QUEUE_LENGTH = 256
TAB_TIMEOUT = 45.0
MAX_POLLING_TABS = 64  # per user: a page that polls holds a lease, not a stream
# Per user: each stream is a connection, a task and a queue that every event is
# copied into. Past this, opening one more ends the oldest (a real person has a
# few tabs; a script opening thousands would otherwise hold the node's memory).
MAX_STREAMS = 32
K = TypeVar("K")
ENDED = "_ended"  # put in a dropped stream's queue so that its feed ends; never sent
# Logged-out sessions remembered, so that a request let in just before the logout
# (a stream opening, a polling tab's beat) cannot open a tab for it just after. Such
# a request is still being handled, so minutes are plenty; the count is bounded.
ENDED_SESSIONS_SECONDS = 300.0
ENDED_SESSIONS = 4096
# A tab whose stream ended and which then polls holds a lease; but a page being closed
# may send one polling beat as it dies (its stream's error handler runs first). So the
# first lease after a stream ended is on probation: it lasts this long unless a second
# beat confirms it (the page sends one within seconds), not a whole tab_timeout.
PROBATION_SECONDS = 6.0
ENDED_STREAMS = 10_000


@dataclass(eq=False)  # compared and hashed by identity: each tab is its own subscription
class Subscription:
    username: str
    tab: str = ""
    seen_at: float = 0.0
    stream: bool = True  # False: a polling tab's lease, which gets no events
    session: str = ""  # the login session it was opened under (ended with it at logout)
    ended: bool = False  # dropped by EventHub.sweep: the feed reading it ends
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(maxsize=QUEUE_LENGTH))


class EventHub:
    def __init__(self, clock: Clock | None = None, *, tab_timeout: float = TAB_TIMEOUT) -> None:
        self.clock = clock or SystemClock()
        self.tab_timeout = tab_timeout
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._listeners: list[Callable[[str, bool], None]] = []
        self._ended_sessions: RecentKeys[str] = RecentKeys(ENDED_SESSIONS)  # logged-out sessions
        self._ended_streams: RecentKeys[tuple[str, str]] = RecentKeys(ENDED_STREAMS)  # (user, tab)

    @property
    def alive_every(self) -> float:
        """How often a stream asks its tab for a heartbeat: three chances per timeout."""
        return self.tab_timeout / 3

    def on_presence_change(self, listener: Callable[[str, bool], None]) -> None:
        """``listener(username, online)`` when a user's first tab opens or last closes."""
        self._listeners.append(listener)

    def subscribe(self, username: str, tab: str | None = None, *, session: str = "") -> Subscription:
        """A tab's live stream. A polling lease the same tab held is replaced by it.

        A stream of a session that has logged out meanwhile is ended at once."""
        sub = Subscription(username, tab or secrets.token_urlsafe(12), self.clock.now(), session=session)
        if session in self._ended_sessions:
            _end(sub)
            return sub
        self._ended_streams.pop((username, sub.tab), None)
        first = not self._subs[username]
        subs = self._subs[username]
        subs.difference_update([s for s in subs if s.tab == sub.tab and not s.stream])
        streams = sorted((s for s in subs if s.stream), key=lambda s: s.seen_at)
        for oldest in streams[: max(0, len(streams) - MAX_STREAMS + 1)]:
            subs.discard(oldest)  # bounded; the user still holds the newer ones
            _end(oldest)
        subs.add(sub)
        if first:
            self._tell(username, True)
        return sub

    def heartbeat(self, username: str, tab: str, *, session: str = "", stream: bool = False) -> bool:
        """``tab`` of ``username`` is open. Without a stream (it polls), it holds a lease.

        ``stream``: the beat answers the tab's stream (an ``alive`` event). It then
        only keeps that stream going: one that crossed the stream's closing on the
        wire (the tab was closed just then) must not open a lease that would show
        the user online for ``tab_timeout`` more seconds. Nor does a beat of a
        session that has logged out meanwhile. Returns whether the tab counts as open."""
        if session in self._ended_sessions:
            return False
        now = self.clock.now()
        subs = self._subs.get(username)
        mine = [s for s in subs or () if s.tab == tab]
        for sub in mine:
            sub.seen_at = now
        if mine:
            return True
        if stream:
            return False
        subs = self._subs[username]
        first = not subs
        leases = sorted((s for s in subs if not s.stream), key=lambda s: s.seen_at)
        for oldest in leases[: max(0, len(leases) - MAX_POLLING_TABS + 1)]:
            subs.discard(oldest)  # bounded; the user still holds the newer ones
        seen = now
        if self._ended_streams.pop((username, tab), None) is not None:
            seen = now - self.tab_timeout + min(PROBATION_SECONDS, self.tab_timeout)  # on probation
        subs.add(Subscription(username, tab, seen, stream=False, session=session))
        if first:
            self._tell(username, True)
        return True

    def end_session(self, username: str, session: str) -> int:
        """A session logged out: its streams end now and its leases go, rather than
        at their next missed heartbeat (a stream would carry messages meanwhile).
        Returns how many tabs it ended."""
        if session:
            self._ended_sessions.add(session, self.clock.now())
        ended = [s for s in self._subs.get(username, ()) if s.session == session]
        for sub in ended:
            self.unsubscribe(sub)
            _end(sub)
        return len(ended)

    def close_tab(self, username: str, tab: str) -> None:
        """A polling tab says it is closing: its lease ends now, not at its timeout."""
        for sub in [s for s in self._subs.get(username, ()) if s.tab == tab and not s.stream]:
            self.unsubscribe(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.username)
        if not subs or sub not in subs:
            return
        subs.discard(sub)
        if sub.stream:
            self._ended_streams.add((sub.username, sub.tab), self.clock.now())
        if not subs:
            del self._subs[sub.username]
            self._tell(sub.username, False)

    def sweep(self) -> int:
        """Drop every tab not heard from for ``tab_timeout`` seconds; end their streams.

        Returns how many were dropped."""
        now = self.clock.now()
        self._ended_sessions.forget_before(now - ENDED_SESSIONS_SECONDS)
        self._ended_streams.forget_before(now - self.tab_timeout)
        gone = [s for subs in self._subs.values() for s in subs if now - s.seen_at >= self.tab_timeout]
        for sub in gone:
            self.unsubscribe(sub)
            _end(sub)
        return len(gone)

    async def run(self) -> None:
        """Sweep a few times per ``tab_timeout`` (real time), forever."""
        every = min(5.0, max(0.2, self.tab_timeout / 10))
        while True:
            await asyncio.sleep(every)
            self.sweep()

    def connected(self) -> set[str]:
        return set(self._subs)

    def publish(self, username: str, event: dict[str, Any]) -> None:
        for sub in list(self._subs.get(username, ())):
            if not sub.stream:
                continue
            if sub.queue.full():
                _drain(sub.queue)
                sub.queue.put_nowait({"type": "resync"})
            sub.queue.put_nowait(event)

    def broadcast(self, event: dict[str, Any]) -> None:
        for username in list(self._subs):
            self.publish(username, event)

    def _tell(self, username: str, online: bool) -> None:
        for listener in self._listeners:
            listener(username, online)


class RecentKeys(dict[K, float]):
    """Keys with when they were added, oldest first, at most ``most`` of them (the
    oldest go first); ``forget_before`` drops those added before a time."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most

    def add(self, key: K, now: float) -> None:
        self.pop(key, None)  # to the end: the order stays oldest first
        self[key] = now
        while len(self) > self.most:
            del self[next(iter(self))]

    def forget_before(self, when: float) -> None:
        while self and next(iter(self.values())) <= when:
            del self[next(iter(self))]


def _end(sub: Subscription) -> None:
    """Make a dropped stream's feed finish (its connection closes)."""
    sub.ended = True
    if sub.stream:
        _drain(sub.queue)
        sub.queue.put_nowait({"type": ENDED})


def _drain(queue: asyncio.Queue[dict[str, Any]]) -> None:
    while not queue.empty():
        queue.get_nowait()
