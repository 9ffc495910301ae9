"""The sending side of MessagingService: order and Retry.

The order a conversation is shown in is the order its messages were sent.
The recipient sorts by the sealed ``sent_at``, so the sender's node makes it
strictly increasing per conversation: two sends in one millisecond, a clock
stepped back, or a restart in between never swap two messages there.
Retry on a message that failed sends it again, in its place.
Real storage, a fake clock, no network."""

from __future__ import annotations

import asyncio

from flamechat.services.blocks import BlockService
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.messaging import MessagingService
from flamechat.services.ratelimit import RateLimits, RateSettings
from flamechat.storage import node_cache, node_messages
from flamechat.storage.database import Database
from flamechat.storage.records import KnownUser
from tests.unit.support import DirectoryDown, FakeClock, user_keys

ME = "n" + "a" * 24
BOB_NODE = "n" + "b" * 24
ALICE, BOB = user_keys("alice"), user_keys("bob")


async def messaging(db: Database, clock: FakeClock) -> MessagingService:
    async with db.write() as conn:
        await node_cache.put_users(
            conn,
            [KnownUser("bob", "Bob", BOB_NODE, "http://b.test", BOB.public.sign, BOB.public.box, True, 0)],
        )
    keyring = KeyRing()
    keyring.unlock("alice", ALICE)
    events = EventHub()
    directory = DirectoryView(db, DirectoryDown(), events, clock, pinned_key=b"\0" * 32)
    return MessagingService(
        db,
        directory,
        keyring,
        events,
        BlockService(db, clock),
        RateLimits(RateSettings(), clock),
        clock,
        node_id=ME,
    )


async def sealed_times(db: Database) -> dict[str, int]:
    """What bob's node will sort by: the ``sent_at`` sealed in each queued envelope."""
    async with db.read() as conn:
        items = await node_messages.due(conn, 2**62, 1000)
    history = {}
    async with db.read() as conn:
        for item in items:
            record = await node_messages.find_message(conn, "alice", item.envelope_id)
            assert record is not None
            history[record.body] = record.sent_at
    return history


async def test_sends_in_one_millisecond_keep_their_order(node_db: Database) -> None:
    clock = FakeClock()  # never moves: every send happens in the same millisecond
    service = await messaging(node_db, clock)
    for n in range(5):
        await service.send("alice", "bob", f"message {n}")
    times = await sealed_times(node_db)
    assert [times[f"message {n}"] for n in range(5)] == sorted(set(times.values()))


async def test_concurrent_sends_get_distinct_times_in_the_order_they_were_sealed(node_db: Database) -> None:
    service = await messaging(node_db, FakeClock())
    await asyncio.gather(*(service.send("alice", "bob", f"message {n}") for n in range(8)))
    times = await sealed_times(node_db)
    assert len(set(times.values())) == 8
    async with node_db.read() as conn:
        queued = [item.envelope_id for item in await node_messages.due(conn, 2**62, 100)]
        bodies = [(await node_messages.find_message(conn, "alice", i)).body for i in queued]  # type: ignore[union-attr]
    assert [times[b] for b in bodies] == sorted(times.values())  # the outbox leaves in the same order


async def test_a_clock_stepped_back_across_a_restart_does_not_reorder(node_db: Database) -> None:
    clock = FakeClock()
    first = await messaging(node_db, clock)
    await first.send("alice", "bob", "before the restart")
    clock.advance(-3600)  # the machine's clock is corrected an hour back, and the node restarts
    second = await messaging(node_db, clock)
    await second.send("alice", "bob", "after the restart")
    times = await sealed_times(node_db)
    assert times["after the restart"] > times["before the restart"]


async def test_retry_of_a_failed_message_sends_it_again_in_its_place(node_db: Database) -> None:
    service = await messaging(node_db, FakeClock())
    sent = await service.send("alice", "bob", "the contract is attached")
    async with node_db.write() as conn:  # the delivery worker gave up on it
        await node_messages.remove_many(conn, [i.seq for i in await node_messages.due(conn, 2**62, 10)])
        await node_messages.set_state(conn, "alice", sent.id, "failed", "refused by the recipient's node")
    tab = service.events.subscribe("alice")

    again = await service.send("alice", "bob", "the contract is attached", sent.id)  # the Retry button

    assert (again.id, again.state, again.error, again.sent_at) == (sent.id, "pending", None, sent.sent_at)
    async with node_db.read() as conn:
        queued = await node_messages.due(conn, 2**62, 10)
    assert [item.envelope_id for item in queued] == [sent.id]  # sealed anew, in the outbox again
    assert tab.queue.get_nowait() == {
        "type": "message_state",
        "id": sent.id,
        "conversation": "bob",
        "state": "pending",
        "error": None,
    }
    # A second click (another tab) while it is pending queues nothing more.
    assert (await service.send("alice", "bob", "the contract is attached", sent.id)).state == "pending"
    async with node_db.read() as conn:
        assert len(await node_messages.due(conn, 2**62, 10)) == 1
