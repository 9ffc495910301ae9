"""A node as a relay (services/relay.py): holds sealed envelopes for an
unreachable node, stores nothing forged, stays within its quotas, forgets
after the expiry. And as a depositor: tries relays in a stable order.
Real storage, fake peers, a directory that is down, a fake clock."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from flamechat.crypto import UserKeys, seal_envelope
from flamechat.protocol import errors
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.ports import TransportError
from flamechat.services.relay import RelayDisabled, RelayQuotaExceeded, RelayService, rendezvous_order
from flamechat.storage import node_cache
from flamechat.storage.database import Database
from flamechat.storage.records import KnownNode, KnownUser
from tests.unit.support import DirectoryDown, FakeClock, user_keys

ME = "n" + "r" * 24  # this node: the relay
ALICE_NODE = "n" + "a" * 24
BOB_NODE = "n" + "b" * 24
ALICE, BOB, MALLORY = user_keys("alice"), user_keys("bob"), user_keys("mallory")


def envelope(
    n: int, *, sender_keys: UserKeys = ALICE, sender: str = "alice", recipient: str = "bob"
) -> dict[str, Any]:
    return seal_envelope(
        sender_keys=sender_keys,
        sender=sender,
        recipient=recipient,
        recipient_box_key=BOB.public.box,
        envelope_id=f"00000000-0000-7000-8000-{n:012d}",
        sent_at=1_800_000_000_000 + n,
        kind="message",
        body={"text": f"message {n}"},
    ).to_wire()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def make_relay(db: Database, clock: FakeClock, **options: Any) -> RelayService:
    directory = DirectoryView(db, DirectoryDown(), EventHub(), clock, pinned_key=b"\0" * 32)
    async with db.write() as conn:
        await node_cache.put_users(
            conn,
            [
                KnownUser(
                    "alice",
                    "Alice",
                    ALICE_NODE,
                    "http://a.test",
                    ALICE.public.sign,
                    ALICE.public.box,
                    False,
                    0,
                ),
                KnownUser("bob", "Bob", BOB_NODE, "http://b.test", BOB.public.sign, BOB.public.box, False, 0),
                KnownUser(
                    "carol", "Carol", BOB_NODE, "http://b.test", BOB.public.sign, BOB.public.box, False, 0
                ),
            ],
        )
    return RelayService(db, directory, None, None, clock, node_id=ME, **options)  # type: ignore[arg-type]


@pytest.fixture
async def relay(node_db: Database, clock: FakeClock) -> RelayService:
    return await make_relay(node_db, clock, ttl=3600.0)


async def test_a_relay_holds_an_envelope_until_its_node_acknowledges_it(relay: RelayService) -> None:
    wire = envelope(1)
    assert await relay.accept(ALICE_NODE, BOB_NODE, wire) == "stored"
    (held,) = await relay.pending(BOB_NODE, 10)
    assert (held.envelope_id, held.recipient) == (wire["id"], "bob")
    assert await relay.pending(ALICE_NODE, 10) == []  # only bob's node collects bob's mail
    assert await relay.acknowledge(ALICE_NODE, [held.seq]) == 0  # another node cannot delete it
    assert await relay.acknowledge(BOB_NODE, [held.seq]) == 1
    assert await relay.pending(BOB_NODE, 10) == []


async def test_a_deposit_retried_is_held_once(relay: RelayService) -> None:
    wire = envelope(1)
    assert await relay.accept(ALICE_NODE, BOB_NODE, wire) == "stored"
    assert await relay.accept(ALICE_NODE, BOB_NODE, wire) == "duplicate"
    assert len(await relay.pending(BOB_NODE, 10)) == 1


async def test_envelopes_are_handed_back_in_deposit_order(relay: RelayService) -> None:
    for n in range(5):
        await relay.accept(ALICE_NODE, BOB_NODE, envelope(n))
    assert [h.envelope_id[-1] for h in await relay.pending(BOB_NODE, 10)] == ["0", "1", "2", "3", "4"]
    assert len(await relay.pending(BOB_NODE, 2)) == 2


@pytest.mark.parametrize(
    "forged",
    [
        envelope(1, sender_keys=MALLORY),  # mallory signs as alice
        {**envelope(1), "sent_at": 5},  # a header changed after signing
        {**envelope(1), "ciphertext": envelope(2)["ciphertext"]},  # content swapped
    ],
)
async def test_a_relay_stores_nothing_forged(relay: RelayService, forged: dict[str, Any]) -> None:
    with pytest.raises(errors.EnvelopeRejected):
        await relay.accept(ALICE_NODE, BOB_NODE, forged)
    assert await relay.pending(BOB_NODE, 10) == []


@pytest.mark.parametrize(
    "garbage", [{}, {"v": 1}, {**envelope(1), "signature": "x"}, {**envelope(1), "v": 2}]
)
async def test_malformed_deposits_are_422(relay: RelayService, garbage: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidRequest):
        await relay.accept(ALICE_NODE, BOB_NODE, garbage)


async def test_a_deposit_for_the_wrong_node_is_refused(relay: RelayService) -> None:
    with pytest.raises(errors.InvalidRequest) as refused:
        await relay.accept(ALICE_NODE, ALICE_NODE, envelope(1))  # bob does not live on alice's node
    assert refused.value.field == "recipient_node"
    with pytest.raises(errors.InvalidRequest):
        await relay.accept(ALICE_NODE, ME, envelope(1))  # for this node itself: deliver directly
    assert await relay.pending(ALICE_NODE, 10) == []


async def test_a_node_that_does_not_offer_relaying_refuses(node_db: Database, clock: FakeClock) -> None:
    closed = await make_relay(node_db, clock, offer=False)
    with pytest.raises(RelayDisabled):
        await closed.accept(ALICE_NODE, BOB_NODE, envelope(1))


async def test_storage_is_bounded_per_recipient(node_db: Database, clock: FakeClock) -> None:
    relay = await make_relay(node_db, clock, max_per_recipient=2)
    await relay.accept(ALICE_NODE, BOB_NODE, envelope(1))
    await relay.accept(ALICE_NODE, BOB_NODE, envelope(2))
    with pytest.raises(RelayQuotaExceeded) as refused:
        await relay.accept(ALICE_NODE, BOB_NODE, envelope(3))
    assert refused.value.status == 507
    await relay.accept(ALICE_NODE, BOB_NODE, envelope(4, recipient="carol"))  # another recipient still fits
    assert len(await relay.pending(BOB_NODE, 10)) == 3


async def test_storage_is_bounded_per_depositor(node_db: Database, clock: FakeClock) -> None:
    relay = await make_relay(node_db, clock, max_per_depositor=2)
    await relay.accept(ALICE_NODE, BOB_NODE, envelope(1))
    await relay.accept(ALICE_NODE, BOB_NODE, envelope(2, recipient="carol"))
    with pytest.raises(RelayQuotaExceeded):
        await relay.accept(ALICE_NODE, BOB_NODE, envelope(3))
    await relay.accept("n" + "z" * 24, BOB_NODE, envelope(3))  # another depositor still fits


async def test_expired_envelopes_awaiting_the_purge_do_not_hold_a_quota(
    node_db: Database, clock: FakeClock
) -> None:
    relay = await make_relay(node_db, clock, max_per_recipient=2, max_per_depositor=3, ttl=3600.0)
    await relay.accept(ALICE_NODE, BOB_NODE, envelope(1))
    await relay.accept(ALICE_NODE, BOB_NODE, envelope(2))
    await relay.accept(ALICE_NODE, BOB_NODE, envelope(3, recipient="carol"))
    with pytest.raises(RelayQuotaExceeded):
        await relay.accept(ALICE_NODE, BOB_NODE, envelope(4))
    clock.advance(3601)  # all three expired; the purge has not run yet
    assert await relay.accept(ALICE_NODE, BOB_NODE, envelope(4)) == "stored"
    assert await relay.accept(ALICE_NODE, BOB_NODE, envelope(5)) == "stored"
    assert [h.envelope_id[-1] for h in await relay.pending(BOB_NODE, 10)] == ["4", "5"]


async def test_storage_is_bounded_in_bytes_per_depositor(node_db: Database, clock: FakeClock) -> None:
    size = len(json.dumps(envelope(1)))
    relay = await make_relay(node_db, clock, max_bytes_per_depositor=2 * size + size // 2)
    await relay.accept(ALICE_NODE, BOB_NODE, envelope(1))
    await relay.accept(ALICE_NODE, BOB_NODE, envelope(2, recipient="carol"))
    with pytest.raises(RelayQuotaExceeded) as refused:
        await relay.accept(ALICE_NODE, BOB_NODE, envelope(3))  # would pass 2.5 envelopes' bytes
    assert refused.value.status == 507
    assert await relay.accept("n" + "z" * 24, BOB_NODE, envelope(3)) == "stored"  # another depositor fits


async def test_held_envelopes_expire(relay: RelayService, clock: FakeClock) -> None:
    await relay.accept(ALICE_NODE, BOB_NODE, envelope(1))
    clock.advance(3599)
    assert len(await relay.pending(BOB_NODE, 10)) == 1
    clock.advance(2)
    assert await relay.pending(BOB_NODE, 10) == []


# --- as a depositor -----------------------------------------------------------------------------


@dataclass
class FakeRelays:
    nodes: list[KnownNode]

    async def relays(self, max_age: float | None = None) -> list[KnownNode]:
        return list(self.nodes)


@dataclass
class DepositPeers:
    """Relays by URL: ``failing`` ones are full (507), ``down`` ones unreachable,
    ``hanging`` ones wait for ``release``; ``takes`` caps what a relay accepts."""

    failing: set[str] = field(default_factory=set)
    down: set[str] = field(default_factory=set)
    hanging: set[str] = field(default_factory=set)
    takes: dict[str, int] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    tried: list[str] = field(default_factory=list)
    stored: list[tuple[str, str]] = field(default_factory=list)

    async def deposit(self, relay_url: str, recipient_node: str, wire: dict[str, Any]) -> dict[str, Any]:
        self.tried.append(relay_url)
        if relay_url in self.hanging:
            await self.release.wait()
            raise TransportError("timed out", transient=True)
        if relay_url in self.down:
            raise TransportError("connection refused", transient=True)
        full = sum(url == relay_url for url, _ in self.stored) >= self.takes.get(relay_url, 10**9)
        if relay_url in self.failing or full:
            raise TransportError("relay full", transient=True, status=507, code="relay_quota_exceeded")
        self.stored.append((relay_url, wire["id"]))
        return {"status": "stored"}


def relay_nodes() -> list[KnownNode]:
    return [KnownNode(f"n{c * 24}", f"http://{c}.test", bytes(32), relay=True) for c in "cdefg"]


async def test_the_depositor_tries_relays_in_rendezvous_order_and_skips_failures(
    node_db: Database, clock: FakeClock
) -> None:
    nodes = relay_nodes()
    expected = [n.url for n in rendezvous_order(nodes, BOB_NODE)]
    peers = DepositPeers(failing=set(expected[:2]))
    depositor = RelayService(node_db, FakeRelays(nodes), peers, None, clock, node_id=ME)  # type: ignore[arg-type]
    chosen = await depositor.deposit(BOB_NODE, envelope(1))
    assert peers.tried == expected[:3]
    assert chosen == next(n.node_id for n in nodes if n.url == expected[2])


async def test_the_depositor_never_uses_itself_or_the_recipients_node(
    node_db: Database, clock: FakeClock
) -> None:
    nodes = [
        KnownNode(ME, "http://me.test", bytes(32), True),
        KnownNode(BOB_NODE, "http://b.test", bytes(32), True),
    ]
    peers = DepositPeers()
    depositor = RelayService(node_db, FakeRelays(nodes), peers, None, clock, node_id=ME)  # type: ignore[arg-type]
    assert await depositor.deposit(BOB_NODE, envelope(1)) is None
    assert peers.tried == []


async def test_when_every_relay_refuses_the_envelope_stays_with_the_sender(
    node_db: Database, clock: FakeClock
) -> None:
    nodes = relay_nodes()
    peers = DepositPeers(failing={n.url for n in nodes})
    depositor = RelayService(node_db, FakeRelays(nodes), peers, None, clock, node_id=ME)  # type: ignore[arg-type]
    assert await depositor.deposit(BOB_NODE, envelope(1)) is None
    assert sorted(peers.tried) == sorted(n.url for n in nodes)  # each tried once, even on the re-check


def depositor_over(
    node_db: Database, clock: FakeClock, peers: DepositPeers
) -> tuple[RelayService, list[str]]:
    """A depositor and the relays' URLs in the order it tries them for bob's node."""
    nodes = relay_nodes()
    service = RelayService(node_db, FakeRelays(nodes), peers, None, clock, node_id=ME)  # type: ignore[arg-type]
    return service, [n.url for n in rendezvous_order(nodes, BOB_NODE)]


async def test_a_batch_moves_to_the_next_relay_at_the_first_failure_and_keeps_its_order(
    node_db: Database, clock: FakeClock
) -> None:
    peers = DepositPeers()
    depositor, order = depositor_over(node_db, clock, peers)
    first, second = order[:2]
    peers.takes[first] = 2
    wires = [envelope(n) for n in range(5)]
    placed = await depositor.deposit_batch(BOB_NODE, wires)
    ids = {n.url: n.node_id for n in relay_nodes()}
    assert placed == [ids[first]] * 2 + [ids[second]] * 3
    assert peers.stored == [(first, wires[0]["id"]), (first, wires[1]["id"])] + [
        (second, w["id"]) for w in wires[2:]
    ]
    assert peers.tried.count(first) == 3  # two taken, one refused, then never again in this batch


async def test_a_relay_that_just_failed_is_skipped_for_a_while_then_tried_again(
    node_db: Database, clock: FakeClock
) -> None:
    peers = DepositPeers()
    depositor, order = depositor_over(node_db, clock, peers)
    dead, spare = order[:2]
    peers.down.add(dead)
    assert await depositor.deposit(BOB_NODE, envelope(1)) is not None
    assert peers.tried == [dead, spare]
    for n in range(2, 5):  # moments later: straight to the spare, no time lost on the dead one
        await depositor.deposit(BOB_NODE, envelope(n))
    assert peers.tried.count(dead) == 1
    placed = await depositor.deposit_batch(BOB_NODE, [envelope(n) for n in range(5, 15)])
    assert set(placed) == {next(n.node_id for n in relay_nodes() if n.url == spare)}
    assert peers.tried.count(dead) == 1

    clock.advance(5)  # its wait is over: one more try, which fails again...
    await depositor.deposit(BOB_NODE, envelope(20))
    assert peers.tried.count(dead) == 2
    clock.advance(5)  # ...so it waits twice as long now
    await depositor.deposit(BOB_NODE, envelope(21))
    assert peers.tried.count(dead) == 2
    clock.advance(5)
    peers.down.clear()  # back up: the next try succeeds, and it is used as before
    await depositor.deposit(BOB_NODE, envelope(22))
    await depositor.deposit(BOB_NODE, envelope(23))
    assert peers.tried[-2:] == [dead, dead]
    assert peers.stored[-2:] == [(dead, envelope(22)["id"]), (dead, envelope(23)["id"])]


async def test_while_one_deposit_tries_a_hanging_relay_again_the_others_skip_it(
    node_db: Database, clock: FakeClock
) -> None:
    peers = DepositPeers()
    depositor, order = depositor_over(node_db, clock, peers)
    hanging = order[0]
    peers.down.add(hanging)
    await depositor.deposit(BOB_NODE, envelope(1))  # fails there once: skipped for 5 s
    peers.down.clear()
    peers.hanging.add(hanging)
    clock.advance(5)
    probe = asyncio.create_task(depositor.deposit(BOB_NODE, envelope(2)))
    for _ in range(100):
        if peers.tried.count(hanging) == 2:
            break
        await asyncio.sleep(0)
    assert peers.tried.count(hanging) == 2  # the probe is waiting on it
    for n in range(3, 8):  # meanwhile, every other deposit goes elsewhere at once
        # (the bound only keeps a broken breaker from hanging the test; no real wait)
        assert await asyncio.wait_for(depositor.deposit(BOB_NODE, envelope(n)), 5) is not None
    assert peers.tried.count(hanging) == 2
    peers.release.set()
    assert await probe is not None  # timed out there, then placed at the next relay
    assert peers.tried.count(hanging) == 2
