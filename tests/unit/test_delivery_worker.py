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

from flamechat.config import NodeSettings
from flamechat.crypto import UserKeys
from flamechat.devnet import free_port
from flamechat.federation.client import HttpPeers, SignedClient
from flamechat.node import build_node
from flamechat.services.blocks import BlockService
from flamechat.services.delivery import DeliveryWorker
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.messaging import MessagingService
from flamechat.services.ports import TransportError
from flamechat.services.ratelimit import RateLimits, RateSettings
from flamechat.services.receiving import ReceivingService
from flamechat.services.relay import RelayService
from flamechat.storage import node_cache, node_messages
from flamechat.storage.database import Database, migrate, sqlite_url
from flamechat.storage.records import KnownNode, KnownUser, OutboxItem
from tests.unit.hanging import HangingServer
from tests.unit.support import DirectoryDown as NoDirectory
from tests.unit.support import node_key

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
    calls: int = 0  # calls made, whatever their outcome
    in_flight: int = 0
    most_in_flight: int = 0

    async def deliver(self, node_url: str, envelope: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            mode = self.behaviour.get(node_url, "ok")
            if mode == "down":
                raise TransportError("connection refused", transient=True)
            if mode == "refuse":
                raise TransportError("403", transient=False, status=403, code="forbidden")
            if mode == "hang":
                await self.hang.wait()
        finally:
            self.in_flight -= 1
        self.delivered.append((node_url, envelope["id"]))
        return {"id": envelope["id"], "status": "stored"}

    async def deliver_batch(self, node_url: str, envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [await self.deliver(node_url, envelope) for envelope in envelopes]


@dataclass
class FakeRelay:
    """Takes deposits (or refuses them, or hangs until ``release`` is set)."""

    accepts: bool = True
    hangs: bool = False
    deposits: list[tuple[str, str]] = field(default_factory=list)
    waiting: int = 0  # deposit batches hanging now
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def deposit_batch(self, recipient_node: str, wires: list[dict[str, Any]]) -> list[str | None]:
        if self.hangs:
            self.waiting += 1
            try:
                await self.release.wait()
            finally:
                self.waiting -= 1
        if not self.accepts:
            return [None] * len(wires)
        self.deposits += [(recipient_node, wire["id"]) for wire in wires]
        return ["nrelayrrrrrrrrrrrrrrrrrrrr"] * len(wires)

    async def deposit(self, recipient_node: str, wire: dict[str, Any]) -> str | None:
        return (await self.deposit_batch(recipient_node, [wire]))[0]


@dataclass
class World:
    db: Database
    clock: FakeClock
    directory: DirectoryView
    peers: FakePeers
    relay: FakeRelay
    messaging: MessagingService
    worker: DeliveryWorker = field(init=False)

    def __post_init__(self) -> None:
        self.worker = self.make_worker()

    def make_worker(self, *, peers: Any = None, relay: Any = None, **options: Any) -> DeliveryWorker:
        return DeliveryWorker(
            self.db,
            self.directory,
            peers or self.peers,
            self.messaging,
            relay or self.relay,
            self.clock,
            receiving=ReceivingService(
                self.db,
                self.directory,
                KeyRing(),
                EventHub(),
                BlockService(self.db, self.clock),
                self.clock,
                outgoing=self.messaging,
            ),
            node_id=ME,
            relay_after=30.0,
            base_delay=1.0,
            max_delay=60.0,
            rng=lambda: 1.0,  # no jitter: delays are exactly base * 2**(n-1)
            **options,
        )

    async def add_users(self, *names: str, url: str | None = None) -> None:
        """Users each on a node of their own, at http://<name>.test (or ``url``)."""
        keys = UserKeys.generate().public
        async with self.db.write() as conn:
            await node_cache.put_users(
                conn,
                [
                    KnownUser(n, n, f"n{n:z<25}", url or f"http://{n}.test", keys.sign, keys.box, False, 0)
                    for n in names
                ],
            )

    async def outbox_item(self, envelope_id: str) -> OutboxItem:
        async with self.db.read() as conn:
            items = await node_messages.due(conn, 2**62, 1000)
        (item,) = [i for i in items if i.envelope_id == envelope_id]
        return item

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

    async def queue_many(self, recipient: str, count: int, *, start: int = 0) -> list[str]:
        """``count`` messages to ``recipient`` queued in one transaction (a backlog)."""
        now = int(self.clock.now() * 1000)
        ids = [f"00000000-0000-7000-8000-{n:012d}" for n in range(start, start + count)]
        async with self.db.write() as conn:
            for envelope_id in ids:
                await node_messages.enqueue(
                    conn,
                    envelope_id=envelope_id,
                    sender="alice",
                    recipient=recipient,
                    payload=json.dumps({"id": envelope_id}),
                    now=now,
                    expires_at=now + 3_600_000,
                )
        return ids

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
    world = World(db, clock, directory, FakePeers(), FakeRelay(), messaging)
    yield world
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


async def test_a_slow_peers_backlog_does_not_hide_a_later_message_to_another_peer(world: World) -> None:
    """1000 envelopes wait for bob's slow node; one for carol, queued after them,
    leaves in the very first dispatch instead of after bob's backlog shrinks."""
    world.peers.behaviour["http://bob.test"] = "hang"
    await world.queue_many("bob", 1000)
    await world.queue("carol", "00000000-0000-7000-8000-100000000001")
    assert await world.worker.dispatch() == 2  # one batch for bob, one for carol
    for _ in range(100):
        if world.peers.delivered:
            break
        await asyncio.sleep(0.01)
    assert world.peers.delivered == [("http://carol.test", "00000000-0000-7000-8000-100000000001")]
    world.peers.hang.set()
    await world.worker.drain(rounds=50)
    delivered = [i for url, i in world.peers.delivered if url == "http://bob.test"]
    assert delivered == [f"00000000-0000-7000-8000-{n:012d}" for n in range(1000)]  # bob's, all in order


async def test_a_slow_peer_in_flight_does_not_hide_later_messages_to_others(world: World) -> None:
    """While bob's node holds a batch, his remaining backlog is not what the worker looks at."""
    world.peers.behaviour["http://bob.test"] = "hang"
    await world.queue_many("bob", 1000)
    assert await world.worker.dispatch() == 1
    await world.queue("carol", "00000000-0000-7000-8000-100000000001")
    assert await world.worker.dispatch() == 1  # carol's, although 900 of bob's are older and due
    for _ in range(100):
        if world.peers.delivered:
            break
        await asyncio.sleep(0.01)
    assert world.peers.delivered == [("http://carol.test", "00000000-0000-7000-8000-100000000001")]
    world.peers.hang.set()
    await world.worker.drain(rounds=50)


async def until(check: Any, what: str, rounds: int = 300) -> None:
    """Let the worker's tasks run (the fake clock does not move) until ``check()``."""
    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not reached")


async def test_at_most_concurrency_batches_are_in_flight(world: World) -> None:
    names = ["dave", "erin", "frank", "gina"]
    await world.add_users(*names)
    for n, name in enumerate(names):
        world.peers.behaviour[f"http://{name}.test"] = "hang"
        await world.queue(name, f"00000000-0000-7000-8000-00000000000{n}")
    worker = world.make_worker(concurrency=3)
    running = asyncio.create_task(worker.run(idle_wait=0.01))
    try:
        await until(lambda: world.peers.in_flight == 3, "three calls in flight")
        for _ in range(30):  # many more rounds of the worker: the fourth still waits
            await asyncio.sleep(0.01)
        assert (world.peers.in_flight, world.peers.most_in_flight, world.peers.calls) == (3, 3, 3)
        world.peers.hang.set()
        await until(lambda: len(world.peers.delivered) == 4, "all four delivered once the peers answer")
        assert world.peers.most_in_flight == 3
    finally:
        running.cancel()


async def test_a_hanging_relay_does_not_use_up_the_slots_healthy_peers_need(world: World) -> None:
    """Four dead nodes, two delivery slots, a relay that never answers: carol's
    message still leaves at once, and at most two deposits wait on the relay."""
    dead = ["dave", "erin", "frank", "gina"]
    await world.add_users(*dead)
    for n, name in enumerate(dead):
        world.peers.behaviour[f"http://{name}.test"] = "down"
        await world.queue(name, f"00000000-0000-7000-8000-00000000000{n}")
    world.clock.t += 31  # past relay_after: they go to the relay once their nodes fail
    world.relay.hangs = True
    await world.queue("carol", "00000000-0000-7000-8000-000000000009")
    worker = world.make_worker(concurrency=2, deposit_concurrency=2)
    running = asyncio.create_task(worker.run(idle_wait=0.01))
    try:
        await until(lambda: world.peers.delivered, "carol's message delivered")
        assert world.peers.delivered == [("http://carol.test", "00000000-0000-7000-8000-000000000009")]
        assert world.relay.waiting == 2  # the deposit slots, and no more
        # the dead nodes whose deposits found no free slot wait for their retry: not lost, not failed
        assert [(await world.state(f"00000000-0000-7000-8000-00000000000{n}"))[0] for n in range(4)] == [
            "pending"
        ] * 4
        world.relay.release.set()
        await until(lambda: len(world.relay.deposits) == 2 and worker.running == 0, "the two deposits done")
        world.clock.t += 2  # the others' retry falls due
        await until(lambda: len(world.relay.deposits) == 4, "all four deposited once the relay answers")
    finally:
        running.cancel()


# --- timeouts, with the real peer client against a loopback server that never answers -------------

SHORT_TIMEOUT = 0.3  # the peer client's timeout here; the drain's bound only catches a lost one


async def test_a_peer_that_never_answers_costs_one_timeout_and_the_envelope_is_retried(world: World) -> None:
    async with HangingServer() as hanging:
        await world.add_users("dave", url=hanging.url)
        client = SignedClient(node_key("me"), world.clock, timeout=SHORT_TIMEOUT)
        worker = world.make_worker(peers=HttpPeers(client))
        await world.queue("dave", "00000000-0000-7000-8000-000000000001")
        try:
            await asyncio.wait_for(worker.drain(), 10)
        finally:
            await client.close()
        assert hanging.connections >= 1
    assert await world.state("00000000-0000-7000-8000-000000000001") == ("pending", None)
    item = await world.outbox_item("00000000-0000-7000-8000-000000000001")
    assert item.attempts == 1
    assert item.next_attempt_at == int(world.clock.now() * 1000) + 1000  # the first retry, 1 s on


async def test_a_relay_that_never_answers_costs_one_timeout_and_is_then_skipped(world: World) -> None:
    """dave's node refuses connections; the only relay takes them and never answers."""
    async with HangingServer() as hanging:
        await world.add_users("dave", url=f"http://127.0.0.1:{free_port()}")
        relay_node = KnownNode("n" + "h" * 25, hanging.url, bytes(32), relay=True)
        async with world.db.write() as conn:
            await node_cache.put_node(conn, relay_node, 0)
        client = SignedClient(node_key("me"), world.clock, timeout=SHORT_TIMEOUT)
        peers = HttpPeers(client)
        relays = RelayService(world.db, world.directory, peers, None, world.clock, node_id=ME)  # type: ignore[arg-type]
        worker = world.make_worker(peers=peers, relay=relays)
        await world.queue("dave", "00000000-0000-7000-8000-000000000001")
        await world.queue("dave", "00000000-0000-7000-8000-000000000002")
        world.clock.t += 31  # past relay_after
        try:
            await asyncio.wait_for(worker.drain(), 10)
            assert hanging.connections == 1  # one deposit tried, not one per envelope
            assert relays.breaker.is_open(relay_node.node_id)
            world.clock.t += 1  # the retry falls due; the relay is still skipped
            await asyncio.wait_for(worker.drain(), 10)
            assert hanging.connections == 1
        finally:
            await client.close()
    for n in (1, 2):
        envelope_id = f"00000000-0000-7000-8000-00000000000{n}"
        assert await world.state(envelope_id) == ("pending", None)  # neither lost nor failed
        assert (await world.outbox_item(envelope_id)).attempts == 2


async def test_the_delivery_concurrency_is_a_node_setting(tmp_path: Path) -> None:
    settings = NodeSettings(data_dir=tmp_path / "node", password_profile="minimal", delivery_concurrency=5)
    node = build_node(settings)
    try:
        assert node.delivery.concurrency == 5
    finally:
        await node.db.close()
