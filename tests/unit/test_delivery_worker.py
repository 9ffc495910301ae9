"""The outbox worker against a fake peer transport and a fake clock.

No network and no sleeping: the transport answers (or fails, or hangs) on
cue, time moves only when the test moves it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flamechat.crypto import UserKeys
from flamechat.services.blocks import BlockService
from flamechat.services.delivery import DeliveryWorker
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.messaging import MessagingService
from flamechat.services.ports import TransportError
from flamechat.services.ratelimit import RateLimits, RateSettings
from flamechat.storage import node_cache, node_messages
from flamechat.storage.database import Database, migrate, sqlite_url
from flamechat.storage.records import KnownUser
from tests.unit.support import DirectoryDown as NoDirectory

ME = "nmeeeeeeeeeeeeeeeeeeeeeeee"
BOB_NODE = "nbobbbbbbbbbbbbbbbbbbbbbbb"
CAROL_NODE = "ncarolccccccccccccccccccc"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def now(self) -> float:
        return self.t


@dataclass
class FakePeers:
    """Records deliveries; per-URL behaviour: "ok", "down", "refuse" or "hang"."""

    behaviour: dict[str, str] = field(default_factory=dict)
    delivered: list[tuple[str, str]] = field(default_factory=list)
    deposits: list[tuple[str, str]] = field(default_factory=list)
    hang: asyncio.Event = field(default_factory=asyncio.Event)

    async def deliver(self, node_url: str, envelope: dict[str, Any]) -> dict[str, Any]:
        mode = self.behaviour.get(node_url, "ok")
        if mode == "down":
            raise TransportError("connection refused", transient=True)
        if mode == "refuse":
            raise TransportError("403", transient=False, status=403, code="forbidden")
        if mode == "hang":
            await self.hang.wait()
        self.delivered.append((node_url, envelope["id"]))
        return {"id": envelope["id"], "status": "stored"}

    async def deliver_batch(self, node_url: str, envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [await self.deliver(node_url, envelope) for envelope in envelopes]


@dataclass
class FakeRelay:
    accepts: bool = True
    deposits: list[tuple[str, str]] = field(default_factory=list)

    async def deposit(self, recipient_node: str, wire: dict[str, Any]) -> str | None:
        if not self.accepts:
            return None
        self.deposits.append((recipient_node, wire["id"]))
        return "nrelayrrrrrrrrrrrrrrrrrrrr"


@dataclass
class World:
    db: Database
    clock: FakeClock
    peers: FakePeers
    relay: FakeRelay
    messaging: MessagingService
    worker: DeliveryWorker

    async def queue(self, recipient: str, envelope_id: str) -> None:
        """A sent message as MessagingService.send leaves it: history row + outbox entry."""
        now = int(self.clock.now() * 1000)
        async with self.db.write() as conn:
            await node_messages.add_message(
                conn,
                owner="alice",
                peer=recipient,
                message_id=envelope_id,
                direction="out",
                sender="alice",
                recipient=recipient,
                body="hi",
                sent_at=now,
                state="pending",
                now=now,
            )
            await node_messages.enqueue(
                conn,
                envelope_id=envelope_id,
                sender="alice",
                recipient=recipient,
                payload=json.dumps({"id": envelope_id}),
                now=now,
                expires_at=now + 3_600_000,
            )

    async def state(self, envelope_id: str) -> tuple[str, str | None]:
        async with self.db.read() as conn:
            record = await node_messages.find_message(conn, "alice", envelope_id)
        assert record is not None
        return record.state, record.error

    async def outbox(self) -> int:
        async with self.db.read() as conn:
            return await node_messages.outbox_size(conn)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    path = tmp_path / "node.sqlite3"
    migrate(sqlite_url(path, driver="pysqlite"), "node")
    db = Database(sqlite_url(path))
    clock = FakeClock()
    events = EventHub()
    directory = DirectoryView(db, NoDirectory(), events, clock, pinned_key=b"\0" * 32)
    keys = UserKeys.generate().public
    async with db.write() as conn:
        await node_cache.put_users(
            conn,
            [
                KnownUser(name, name, node, f"http://{name}.test", keys.sign, keys.box, False, 0)
                for name, node in (("bob", BOB_NODE), ("carol", CAROL_NODE))
            ],
        )
    messaging = MessagingService(
        db,
        directory,
        KeyRing(),
        events,
        BlockService(db, clock),
        RateLimits(RateSettings(), clock),
        clock,
        node_id=ME,
    )
    peers, relay = FakePeers(), FakeRelay()
    worker = DeliveryWorker(
        db,
        directory,
        peers,
        messaging,
        relay,  # type: ignore[arg-type]
        clock,
        node_id=ME,
        relay_after=30.0,
        base_delay=1.0,
        max_delay=60.0,
        rng=lambda: 1.0,  # no jitter: delays are exactly base * 2**(n-1)
    )
    yield World(db, clock, peers, relay, messaging, worker)
    await db.close()


async def test_envelopes_to_one_recipient_leave_in_order(world: World) -> None:
    ids = [f"00000000-0000-7000-8000-00000000000{i}" for i in range(6)]
    for envelope_id in ids:
        await world.queue("bob", envelope_id)
    await world.worker.drain()
    assert world.peers.delivered == [("http://bob.test", i) for i in ids]
    assert [(await world.state(i))[0] for i in ids] == ["sent"] * 6
    assert await world.outbox() == 0


async def test_unreachable_peer_is_retried_with_backoff_not_before(world: World) -> None:
    world.peers.behaviour["http://bob.test"] = "down"
    await world.queue("bob", "00000000-0000-7000-8000-000000000001")
    await world.worker.drain()
    assert world.peers.delivered == []
    assert await world.state("00000000-0000-7000-8000-000000000001") == ("pending", None)
    world.peers.behaviour["http://bob.test"] = "ok"
    world.clock.t += 0.9  # first retry is due after 1 s
    await world.worker.drain()
    assert world.peers.delivered == []
    world.clock.t += 0.2
    await world.worker.drain()
    assert world.peers.delivered == [("http://bob.test", "00000000-0000-7000-8000-000000000001")]


async def test_backoff_doubles_between_attempts(world: World) -> None:
    world.peers.behaviour["http://bob.test"] = "down"
    await world.queue("bob", "00000000-0000-7000-8000-000000000001")
    due = []
    for _ in range(4):
        await world.worker.drain()
        async with world.db.read() as conn:
            (item,) = await node_messages.due(conn, 2**62, 10)
        due.append((item.next_attempt_at - int(world.clock.now() * 1000)) / 1000)
        world.clock.t = item.next_attempt_at / 1000
    assert due == [1.0, 2.0, 4.0, 8.0]


async def test_a_hanging_peer_does_not_delay_another(world: World) -> None:
    world.peers.behaviour["http://bob.test"] = "hang"
    await world.queue("bob", "00000000-0000-7000-8000-000000000001")
    await world.queue("carol", "00000000-0000-7000-8000-000000000002")
    await world.worker.dispatch()
    for _ in range(100):
        if world.peers.delivered:
            break
        await asyncio.sleep(0.01)
    assert world.peers.delivered == [("http://carol.test", "00000000-0000-7000-8000-000000000002")]
    world.peers.hang.set()
    await world.worker.drain()
    assert ("http://bob.test", "00000000-0000-7000-8000-000000000001") in world.peers.delivered


async def test_refusal_fails_the_message_visibly(world: World) -> None:
    world.peers.behaviour["http://bob.test"] = "refuse"
    await world.queue("bob", "00000000-0000-7000-8000-000000000001")
    await world.worker.drain()
    state, error = await world.state("00000000-0000-7000-8000-000000000001")
    assert state == "failed"
    assert error is not None
    assert "forbidden" in error
    assert await world.outbox() == 0


async def test_expired_envelope_fails_instead_of_retrying_forever(world: World) -> None:
    world.peers.behaviour["http://bob.test"] = "down"
    world.relay.accepts = False
    await world.queue("bob", "00000000-0000-7000-8000-000000000001")
    world.clock.t += 3601
    await world.worker.drain()
    state, error = await world.state("00000000-0000-7000-8000-000000000001")
    assert state == "failed"
    assert error is not None
    assert error.startswith("expired")


async def test_long_unreachable_recipient_goes_to_a_relay(world: World) -> None:
    world.peers.behaviour["http://bob.test"] = "down"
    await world.queue("bob", "00000000-0000-7000-8000-000000000001")
    await world.worker.drain()
    assert world.relay.deposits == []  # too early: the peer may come back
    world.clock.t += 31
    await world.worker.drain()
    assert world.relay.deposits == [(BOB_NODE, "00000000-0000-7000-8000-000000000001")]
    assert await world.state("00000000-0000-7000-8000-000000000001") == ("sent", None)
    assert await world.outbox() == 0
