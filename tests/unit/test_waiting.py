"""Writing to a colleague who has never signed in: the message waits on the
sender's node, unsealed, and is sealed and sent once they have keys.

Against a real directory service in this process (bob's account exists, with
no keys until his first login) and a real node database, with a fake clock.
alice and bob share one node, so a released message is delivered in-process
and shows up in bob's history."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from flamechat.crypto import KdfParams, SealedEnvelope, open_envelope
from flamechat.services.accounts import AccountService
from flamechat.services.blocks import BlockService
from flamechat.services.delivery import DeliveryWorker
from flamechat.services.directory import DirectoryService
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.messaging import MessagingService, UserBlocked
from flamechat.services.passwords import make_hasher
from flamechat.services.ratelimit import RateLimits, RateSettings
from flamechat.services.receiving import ReceivingService
from flamechat.services.waiting import WaitingSends
from flamechat.storage import directory_store, node_messages, node_waiting
from flamechat.storage.database import Database
from flamechat.storage.records import MessageRecord
from tests.unit import directory_support
from tests.unit.directory_support import DIRECTORY_KEY, NODE_KEY, InProcessDirectory
from tests.unit.support import FakeClock

clock = directory_support.clock
directory_db_template = directory_support.directory_db_template
directory_service = directory_support.directory_service

TTL = 7 * 24 * 3600.0


@dataclass
class Node:
    """One node's services over one database, as ``build_node`` wires them."""

    db: Database
    clock: FakeClock
    port: InProcessDirectory
    keyring: KeyRing = field(default_factory=KeyRing)
    events: EventHub = field(default_factory=EventHub)
    woken: int = 0

    def __post_init__(self) -> None:
        self.directory = DirectoryView(
            self.db, self.port, self.events, self.clock, pinned_key=DIRECTORY_KEY.public_key
        )
        self.accounts = AccountService(
            self.db,
            self.directory,
            self.keyring,
            make_hasher("minimal"),
            self.clock,
            node_id=NODE_KEY.node_id,
            kdf=KdfParams.minimal(),
            session_ttl=3600,
        )
        self.blocks = BlockService(self.db, self.clock)
        self.waiting = WaitingSends(self.db, self.directory, self.keyring, self.events, self.clock, ttl=TTL)
        self.messaging = MessagingService(
            self.db,
            self.directory,
            self.keyring,
            self.events,
            self.blocks,
            RateLimits(RateSettings(), self.clock),
            self.clock,
            node_id=NODE_KEY.node_id,
            outbox_ttl=TTL,
            waiting=self.waiting,
        )
        self.receiving = ReceivingService(
            self.db,
            self.directory,
            self.keyring,
            self.events,
            self.blocks,
            self.clock,
            outgoing=self.messaging,
        )
        self.worker = DeliveryWorker(
            self.db,
            self.directory,
            NoPeers(),
            self.messaging,
            None,
            self.clock,
            receiving=self.receiving,
            node_id=NODE_KEY.node_id,
        )
        self.messaging.on_queued(self.wake)

    def wake(self) -> None:
        self.woken += 1

    async def history(self, owner: str, peer: str) -> list[MessageRecord]:
        rows, _older, _newer = await self.messaging.history(owner, peer, limit=200)
        return rows

    async def outbox(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return [json.loads(item.payload) for item in await node_messages.due(conn, 2**62, 1000)]

    async def waiting_rows(self) -> int:
        async with self.db.read() as conn:
            return len(await node_waiting.for_pair(conn, "alice", "bob", 1000))


class NoPeers:
    """No other node is involved: alice and bob live on this one."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"no peer call expected ({name})")


@pytest.fixture
async def node(node_db: Database, directory_service: DirectoryService, clock: FakeClock) -> Node:
    made = Node(node_db, clock, InProcessDirectory(directory_service, NODE_KEY.node_id))
    await made.accounts.login("alice", "alice-password")  # alice has keys; bob never signed in
    return made


def states(rows: list[MessageRecord]) -> list[str]:
    return [r.state for r in rows]


async def test_a_message_to_someone_without_keys_waits_and_nothing_is_sealed(node: Node) -> None:
    sent = await node.messaging.send("alice", "bob", "welcome aboard, bob")
    assert sent.state == "waiting"
    assert await node.outbox() == []  # nothing sealed: there is no key to seal to
    assert states(await node.history("alice", "bob")) == ["waiting"]

    await node.waiting.check()  # bob still has no keys: it keeps waiting
    assert states(await node.history("alice", "bob")) == ["waiting"]
    assert await node.outbox() == []
    assert node.woken == 0


async def test_once_the_recipient_signs_in_the_messages_go_in_order_with_their_own_id_and_time(
    node: Node, clock: FakeClock
) -> None:
    tab = node.events.subscribe("alice")
    sent = []
    for n in range(3):
        sent.append(await node.messaging.send("alice", "bob", f"message {n}"))
        clock.advance(60)
    await node.accounts.login("bob", "bob-password")  # his first login makes and publishes his keys

    await node.waiting.check()
    queued = [SealedEnvelope.from_wire(wire) for wire in await node.outbox()]
    assert [e.id for e in queued] == [m.id for m in sent]
    bob = node.keyring.require("bob")
    alice = node.keyring.require("alice").public
    opened = [open_envelope(e, recipient_keys=bob, sender_sign_key=alice.sign) for e in queued]
    assert [o.sent_at for o in opened] == [m.sent_at for m in sent]  # written then, not now
    assert [o.body["text"] for o in opened] == ["message 0", "message 1", "message 2"]
    assert states(await node.history("alice", "bob")) == ["pending"] * 3
    assert await node.waiting_rows() == 0
    assert node.woken >= 1  # the delivery worker was told
    events = [tab.queue.get_nowait() for _ in range(tab.queue.qsize())]
    assert {(e["id"], e["state"]) for e in events if e["type"] == "message_state"} >= {
        (m.id, "pending") for m in sent
    }

    await node.worker.drain()  # bob lives here: delivered in-process, receipts come back
    await node.worker.drain()
    at_bob = await node.history("bob", "alice")
    assert [(m.id, m.body, m.sent_at) for m in at_bob] == [(m.id, m.body, m.sent_at) for m in sent]
    assert states(await node.history("alice", "bob")) == ["delivered"] * 3


async def test_a_new_message_does_not_overtake_those_still_waiting(node: Node) -> None:
    first = await node.messaging.send("alice", "bob", "first")
    second = await node.messaging.send("alice", "bob", "second")
    await node.accounts.login("bob", "bob-password")
    # bob has keys now, but nothing has released the first two yet: the third waits behind them
    third = await node.messaging.send("alice", "bob", "third")
    assert third.state == "waiting"
    assert await node.outbox() == []

    await node.waiting.check()
    assert [w["id"] for w in await node.outbox()] == [first.id, second.id, third.id]
    # nothing waits any more: the next message is sealed and queued at once
    fourth = await node.messaging.send("alice", "bob", "fourth")
    assert fourth.state == "pending"
    assert [w["id"] for w in await node.outbox()] == [first.id, second.id, third.id, fourth.id]


async def test_a_message_that_waited_too_long_fails_visibly(node: Node, clock: FakeClock) -> None:
    tab = node.events.subscribe("alice")
    sent = await node.messaging.send("alice", "bob", "are you there?")
    clock.advance(TTL - 1)
    await node.waiting.check()
    assert states(await node.history("alice", "bob")) == ["waiting"]

    clock.advance(2)
    await node.waiting.check()
    (failed,) = await node.history("alice", "bob")
    assert failed.state == "failed"
    assert "bob never signed in" in (failed.error or "")
    assert await node.waiting_rows() == 0
    assert await node.outbox() == []
    events = [tab.queue.get_nowait() for _ in range(tab.queue.qsize())]
    shown = [e for e in events if e["type"] == "message_state" and e["id"] == sent.id]
    assert [(e["state"], e["error"]) for e in shown] == [("failed", failed.error)]  # alice's tabs are told

    # bob signing in later changes nothing: it was given up
    await node.accounts.login("bob", "bob-password")
    await node.waiting.check()
    assert await node.outbox() == []


async def test_waiting_messages_survive_a_restart_and_go_once_the_recipient_signs_in(
    node: Node, clock: FakeClock
) -> None:
    first = await node.messaging.send("alice", "bob", "before the restart")
    restarted = Node(node.db, clock, node.port)  # the same database, every memory lost
    await restarted.accounts.login("alice", "alice-password")
    await restarted.accounts.login("bob", "bob-password")
    second = await restarted.messaging.send("alice", "bob", "after the restart")
    assert second.state == "waiting"  # behind the one from before the restart

    await restarted.waiting.check()
    assert [w["id"] for w in await restarted.outbox()] == [first.id, second.id]
    assert states(await restarted.history("alice", "bob")) == ["pending", "pending"]


async def test_waiting_messages_go_only_once_the_sender_can_sign_them(node: Node) -> None:
    sent = await node.messaging.send("alice", "bob", "hello")
    node.keyring.lock("alice")  # alice's last session ended: her keys left the node's memory
    await node.accounts.login("bob", "bob-password")
    await node.waiting.check()
    assert await node.outbox() == []
    assert states(await node.history("alice", "bob")) == ["waiting"]

    await node.accounts.login("alice", "alice-password")
    await node.waiting.check()
    assert [w["id"] for w in await node.outbox()] == [sent.id]


async def test_an_account_closed_before_signing_in_fails_what_waits_for_it(
    node: Node, directory_service: DirectoryService, clock: FakeClock
) -> None:
    await node.messaging.send("alice", "bob", "hello")
    async with directory_service.db.write() as conn:
        await directory_store.update_account(conn, "bob", 0, disabled=1)
    clock.advance(node.waiting.ask_every)
    await node.waiting.check()
    (failed,) = await node.history("alice", "bob")
    assert failed.state == "failed"
    assert "closed" in (failed.error or "")
    assert await node.waiting_rows() == 0


async def test_a_block_still_refuses_at_once(node: Node) -> None:
    await node.blocks.block("alice", "bob")
    with pytest.raises(UserBlocked):
        await node.messaging.send("alice", "bob", "hello")
    assert await node.history("alice", "bob") == []
