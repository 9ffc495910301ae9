"""Blocking (services/blocks.py) against the real storage layer and a fake clock."""

from __future__ import annotations

import pytest

from flamechat.protocol import errors
from flamechat.services.blocks import ADMIN_CACHE_SECONDS, BlockService, NodeBlocked
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.presence import PresenceService
from flamechat.storage import node_cache
from flamechat.storage.database import Database
from flamechat.storage.records import KnownUser
from tests.unit.support import DirectoryDown, FakeClock

NODE = "n" + "b" * 24


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def blocks(node_db: Database, clock: FakeClock) -> BlockService:
    return BlockService(node_db, clock)


async def test_a_block_drops_that_senders_envelopes_for_the_blocker_only(blocks: BlockService) -> None:
    await blocks.block("alice", "mallory")
    assert await blocks.drops("alice", "mallory")
    assert not await blocks.drops("bob", "mallory")  # bob did not block mallory
    assert not await blocks.drops("mallory", "alice")  # a block is one-way
    assert not await blocks.drops("alice", "bob")


async def test_block_list_is_sorted_and_blocking_twice_is_harmless(blocks: BlockService) -> None:
    for name in ("zed", "mallory", "eve", "mallory"):
        await blocks.block("alice", name)
    assert await blocks.blocked_by("alice") == ["eve", "mallory", "zed"]
    assert await blocks.blocked_by("bob") == []
    assert await blocks.all_blocks() == {"alice": {"eve", "mallory", "zed"}}


async def test_unblock_lets_messages_through_again(blocks: BlockService) -> None:
    await blocks.block("alice", "mallory")
    await blocks.unblock("alice", "mallory")
    assert not await blocks.drops("alice", "mallory")
    assert await blocks.blocked_by("alice") == []
    await blocks.unblock("alice", "mallory")  # unblocking someone not blocked is harmless


async def test_nobody_can_block_themselves(blocks: BlockService) -> None:
    with pytest.raises(errors.InvalidRequest) as refused:
        await blocks.block("alice", "alice")
    assert refused.value.field == "username"
    assert await blocks.blocked_by("alice") == []


async def test_operator_user_block_drops_for_every_user_here(blocks: BlockService) -> None:
    await blocks.admin_block("user", "spammer")
    assert await blocks.drops("alice", "spammer")
    assert await blocks.drops("bob", "spammer")
    assert not await blocks.drops("alice", "bob")
    await blocks.admin_unblock("user", "spammer")
    assert not await blocks.drops("alice", "spammer")  # effective at once on this instance


async def test_operator_node_block_refuses_that_node(blocks: BlockService) -> None:
    await blocks.refuse_node(NODE)  # not blocked yet: no error
    await blocks.admin_block("node", NODE)
    with pytest.raises(NodeBlocked) as refused:
        await blocks.refuse_node(NODE)
    assert (refused.value.status, refused.value.code) == (403, "node_blocked")
    await blocks.refuse_node("n" + "c" * 24)
    assert await blocks.admin_list() == [("node", NODE)]


async def test_a_block_made_from_the_cli_applies_within_the_cache_time(
    node_db: Database, blocks: BlockService, clock: FakeClock
) -> None:
    await blocks.refuse_node(NODE)  # the running node has read (and cached) the operator blocks
    cli = BlockService(node_db, clock)  # the CLI: another BlockService on the same database
    await cli.admin_block("node", NODE)
    clock.advance(ADMIN_CACHE_SECONDS / 2)
    await blocks.refuse_node(NODE)  # still the cached list
    clock.advance(ADMIN_CACHE_SECONDS)
    with pytest.raises(NodeBlocked):
        await blocks.refuse_node(NODE)


async def test_a_blocked_node_is_known_as_a_senders_home_too(blocks: BlockService) -> None:
    assert not await blocks.node_blocked(NODE)
    await blocks.admin_block("node", NODE)
    assert await blocks.node_blocked(NODE)  # what the receive path asks of a relayed envelope
    assert not await blocks.node_blocked("n" + "c" * 24)
    assert not await blocks.drops("alice", "bob")  # a node block names no user


# --- status hiding, as sent to peer nodes ---------------------------------------------------


async def test_a_blockers_status_is_not_sent_to_a_node_where_everyone_is_blocked(
    node_db: Database, blocks: BlockService, clock: FakeClock
) -> None:
    mallory_node, shared_node = "n" + "m" * 24, "n" + "s" * 24

    def known(username: str, home: str) -> KnownUser:
        return KnownUser(username, username.title(), home, f"http://{home}.test", None, None, True, 0)

    async with node_db.write() as conn:
        await node_cache.put_users(
            conn,
            [
                known("alice", NODE),
                known("mallory", mallory_node),
                known("bob", shared_node),
                known("eve", shared_node),
            ],
        )
    events = EventHub()
    directory = DirectoryView(node_db, DirectoryDown(), events, clock, pinned_key=b"\0" * 32)
    presence = PresenceService(
        node_db, events, directory, DirectoryDown(), blocks, clock, node_id=NODE, interval=10.0
    )
    events.subscribe("alice")  # alice has a tab open: online
    await blocks.block("alice", "mallory")
    await blocks.block("alice", "eve")

    # mallory's own node (a personal node): alice is not listed, so she is offline there.
    assert await presence.for_node(mallory_node) == []
    # A shared node: alice is listed, hidden from eve there, and shown to bob.
    (entry,) = await presence.for_node(shared_node)
    assert (entry.username, entry.status, entry.hidden_from) == ("alice", "online", ("eve",))
    await blocks.unblock("alice", "mallory")
    (entry,) = await presence.for_node(mallory_node)
    assert (entry.username, entry.hidden_from) == ("alice", ())
