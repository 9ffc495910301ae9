"""Presence during a directory outage (services/presence.py): peers are asked
directly, a bounded number at a time, and a node whose presence loop sleeps
for a long interval still reacts within seconds when the directory goes away
and comes back. Fake directory and peers; real storage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from flamechat.protocol import errors
from flamechat.services import presence as presence_module
from flamechat.services.blocks import BlockService
from flamechat.services.events import EventHub
from flamechat.services.ports import TransportError
from flamechat.services.presence import PEER_QUERIES_AT_ONCE, PresenceService
from flamechat.storage.database import Database
from flamechat.storage.records import KnownUser, PresenceEntry
from tests.unit.support import FakeClock

ME = "n" + "m" * 24


def node_of(n: int) -> str:
    return f"n{n:0>24}"


@dataclass
class FakeDirectory:
    """The parts of DirectoryView presence uses; ``down`` makes its calls fail."""

    users: list[KnownUser] = field(default_factory=list)
    down: bool = False
    reachable: bool | None = None
    reports: int = 0
    shown: dict[str, PresenceEntry | None] = field(default_factory=dict)

    async def _call(self) -> None:
        if self.down:
            self.reachable = False
            raise errors.DirectoryUnavailable("directory unreachable")
        self.reachable = True

    async def report_presence(self, entries: list[PresenceEntry]) -> None:
        await self._call()
        self.reports += 1

    async def refresh(self) -> list[KnownUser]:
        await self._call()
        return self.users

    async def cached_users(self) -> list[KnownUser]:
        return self.users

    async def set_presence(self, username: str, entry: PresenceEntry | None) -> None:
        self.shown[username] = entry


@dataclass
class FakePeers:
    """Answers ``GET /federation/v1/presence`` per node URL; may hold answers back."""

    online: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    hold: asyncio.Event | None = None
    asked: list[str] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    async def presence(self, node_url: str) -> dict[str, Any]:
        self.asked.append(node_url)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.hold is not None:
                await self.hold.wait()
            if node_url in self.dead:
                raise TransportError("connection refused", transient=True)
            return {"users": self.online.get(node_url, [])}
        finally:
            self.in_flight -= 1

    async def push_presence(self, node_url: str, users: list[dict[str, Any]]) -> None:
        return None


def user(name: str, n: int) -> KnownUser:
    return KnownUser(name, name, node_of(n), f"http://node{n}.test", None, None, True, 0)


def service(
    node_db: Database, directory: FakeDirectory, peers: FakePeers, interval: float
) -> PresenceService:
    clock = FakeClock()
    return PresenceService(
        node_db,
        EventHub(),
        directory,  # type: ignore[arg-type]
        peers,  # type: ignore[arg-type]
        BlockService(node_db, clock),
        clock,
        node_id=ME,
        interval=interval,
    )


async def until(check: Callable[[], object], what: str, rounds: int = 500) -> None:
    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not reached")


async def test_during_an_outage_peers_are_asked_at_most_8_at_once(node_db: Database) -> None:
    directory = FakeDirectory(users=[user(f"user{n}", n) for n in range(20)])
    peers = FakePeers(hold=asyncio.Event())
    polling = asyncio.create_task(service(node_db, directory, peers, 10.0).poll_peers())
    await until(lambda: peers.in_flight == PEER_QUERIES_AT_ONCE, "8 questions in flight")
    for _ in range(20):
        await asyncio.sleep(0)
    assert (peers.in_flight, len(peers.asked)) == (8, 8)  # the other 12 wait their turn
    assert peers.hold is not None
    peers.hold.set()
    await asyncio.wait_for(polling, 5)
    assert sorted(peers.asked) == sorted(f"http://node{n}.test" for n in range(20))
    assert peers.most_in_flight == PEER_QUERIES_AT_ONCE


async def test_users_of_a_node_that_does_not_answer_are_shown_offline(node_db: Database) -> None:
    directory = FakeDirectory(users=[user("bob", 1), user("carol", 2), user("me", 0)])
    directory.users[2] = KnownUser("me", "me", ME, "http://me.test", None, None, True, 0)
    peers = FakePeers(
        online={"http://node1.test": [{"username": "bob", "status": "busy", "status_text": "call"}]},
        dead={"http://node2.test"},
    )
    await service(node_db, directory, peers, 10.0).poll_peers()
    bob = directory.shown["bob"]
    assert bob is not None
    assert (bob.status, bob.status_text) == ("busy", "call")
    assert directory.shown["carol"] is None  # her node is down: offline
    assert "me" not in directory.shown  # this node's own users come from its tabs, not a poll
    assert "http://me.test" not in peers.asked


async def test_a_peer_answering_presence_out_of_shape_is_shown_offline_and_breaks_nothing(
    node_db: Database,
) -> None:
    """A hostile peer's answer: a list for a username (unhashable: the whole poll
    failed, for every peer), a status no one may have, an 8 MiB status text."""
    directory = FakeDirectory(users=[user("bob", 1), user("eve", 2), user("carol", 3), user("dan", 3)])
    peers = FakePeers(
        online={
            "http://node1.test": [{"username": ["bob"]}, {"username": "bob", "status": "<b>pwned</b>"}],
            "http://node2.test": [{"username": "eve", "status_text": "x" * 200}, "eve", None],
            "http://node3.test": [
                {"username": "carol", "status": "away", "status_text": "lunch", "future_field": 1},
                {"username": "dan", "hidden_from": "not a list"},
            ],
        },
    )
    await service(node_db, directory, peers, 10.0).poll_peers()
    assert directory.shown["bob"] is None
    assert directory.shown["eve"] is None
    carol = directory.shown["carol"]
    assert carol is not None
    assert (carol.status, carol.status_text) == ("away", "lunch")  # fields it does not know are ignored
    assert directory.shown["dan"] is None


async def test_with_a_long_interval_an_outage_noticed_elsewhere_still_starts_polling_and_reporting(
    node_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The presence loop sleeps an hour between rounds here. When another call on
    the node (a user listing users, a delivery) finds the directory down, the loop
    asks peers within OUTAGE_POLL, and reports again as soon as the directory is
    back, rather than an hour later."""
    monkeypatch.setattr(presence_module, "OUTAGE_POLL", 0.02)
    directory = FakeDirectory(users=[user("bob", 1)])
    peers = FakePeers(online={"http://node1.test": [{"username": "bob"}]})
    running = asyncio.create_task(service(node_db, directory, peers, 3600.0).run())
    try:
        await until(lambda: directory.reports == 1, "the first report")
        directory.down = True
        with pytest.raises(errors.DirectoryUnavailable):
            await directory.refresh()  # somebody else's call notices the outage
        await until(lambda: peers.asked, "peers asked for presence")
        directory.down = False
        await until(lambda: directory.reports == 2, "reported again once the directory answers")
        assert directory.shown["bob"] is not None
    finally:
        running.cancel()


async def test_a_tab_that_vanished_without_closing_leaves_the_reports_within_the_tab_timeout(
    node_db: Database,
) -> None:
    """alice's laptop was shut with her page open: no heartbeat comes any more. Within
    the tab timeout she is out of what the node reports and pushes, and a round that
    tells the directory and the peers is due at once."""
    clock = FakeClock()
    events = EventHub(clock, tab_timeout=45.0)
    presence = PresenceService(
        node_db,
        events,
        FakeDirectory(),  # type: ignore[arg-type]
        FakePeers(),  # type: ignore[arg-type]
        BlockService(node_db, clock),
        clock,
        node_id=ME,
        interval=10.0,
    )
    events.subscribe("alice", "laptop-tab")
    events.heartbeat("bob", "polling-tab")  # bob's page polls, and goes on doing so
    assert [e.username for e in await presence.entries()] == ["alice", "bob"]
    presence._changed.clear()
    for _ in range(3):
        clock.advance(15.0)
        events.heartbeat("bob", "polling-tab")
        events.sweep()
    assert [e.username for e in await presence.entries()] == ["bob"]
    assert [e.username for e in await presence.for_node(node_of(1))] == ["bob"]
    assert presence._changed.is_set()  # a round is due at once,
    assert presence._announce  # and it pushes to the peers
