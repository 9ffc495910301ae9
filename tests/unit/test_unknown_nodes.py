"""Requests naming node ids the node has never seen cost it little (DirectoryView.node).

A node needs a caller's key before it can check the caller's signature, so
anyone may make it look a node id up at the directory, which counts the
lookup against this node's own request rate. Before the bound, a few hundred
unsigned requests a second with random ids spent that rate: the directory
answered the node 429 and its users got no logins, lookups or presence. And
when a lookup could not be made, the request was refused as 401
unknown_node, which a genuine new peer takes as final (its messages failed).
"""

from __future__ import annotations

from typing import Any

import pytest

from flamechat.crypto import b64encode
from flamechat.protocol import errors
from flamechat.services.directory_view import (
    NODE_LOOKUPS_PER_SECOND,
    PEER_USER_LOOKUP_BURST,
    USER_LOOKUP_BURST,
    DirectoryView,
)
from flamechat.services.events import EventHub
from flamechat.services.ratelimit import TokenBucket
from flamechat.storage.database import Database
from tests.unit import directory_support
from tests.unit.directory_support import DIRECTORY_KEY, NODE_KEY, InProcessDirectory
from tests.unit.support import DirectoryDown, FakeClock, node_key

clock = directory_support.clock
directory_db_template = directory_support.directory_db_template
directory_service = directory_support.directory_service

NEWCOMER = node_key("newcomer")


@pytest.fixture
def port(directory_service: Any) -> InProcessDirectory:
    return InProcessDirectory(directory_service, NODE_KEY.node_id)


def random_ids(count: int) -> list[str]:
    return [node_key(f"stranger-{i}").node_id for i in range(count)]


async def test_a_flood_of_unknown_node_ids_asks_the_directory_a_bounded_number_of_times(
    node_db: Database, port: InProcessDirectory, directory_service: Any, clock: FakeClock
) -> None:
    view = DirectoryView(node_db, port, EventHub(clock), clock, pinned_key=DIRECTORY_KEY.public_key)
    told_unknown, busy = 0, []
    for node_id in random_ids(1000):
        try:
            told_unknown += await view.node(node_id) is None
        except errors.DirectoryUnavailable as exc:
            busy.append(exc.details["retry_after"])
    assert told_unknown == NODE_LOOKUPS_PER_SECOND
    assert busy == [1] * (1000 - int(NODE_LOOKUPS_PER_SECOND))  # answered 503, Retry-After: 1
    assert port.calls.count("get_node") == NODE_LOOKUPS_PER_SECOND

    # A real node registered meanwhile is found once the second has passed, and
    # known nodes never needed a lookup at all.
    await directory_service.register_node(NEWCOMER.node_id, "http://new.test", b64encode(NEWCOMER.public_key))
    clock.advance(1)
    found = await view.node(NEWCOMER.node_id)
    assert found is not None
    assert found.url == "http://new.test"
    for _ in range(100):  # cached now: no budget spent, no directory call
        assert await view.node(NEWCOMER.node_id) == found
    assert port.calls.count("get_node") <= NODE_LOOKUPS_PER_SECOND + 2


async def test_an_unknown_node_while_the_directory_is_down_is_a_retry_not_a_refusal(
    node_db: Database, clock: FakeClock
) -> None:
    view = DirectoryView(
        node_db, DirectoryDown(), EventHub(clock), clock, pinned_key=DIRECTORY_KEY.public_key
    )
    with pytest.raises(errors.DirectoryUnavailable):
        await view.node(NEWCOMER.node_id)


async def test_a_peer_naming_made_up_users_spends_its_own_lookups_then_waits(
    node_db: Database, port: InProcessDirectory, clock: FakeClock
) -> None:
    """One batch of 100 envelopes from 100 made-up senders was 100 directory calls."""
    view = DirectoryView(node_db, port, EventHub(clock), clock, pinned_key=DIRECTORY_KEY.public_key)
    hostile, other = node_key("hostile").node_id, node_key("other").node_id

    async def outcome(username: str, peer: str) -> str:
        try:
            await view.resolve(username, for_peer=peer)
        except errors.UnknownUser:
            return "asked"
        except errors.DirectoryUnavailable:
            return "later"
        return "found"

    outcomes = [await outcome(f"made-up-{i}", hostile) for i in range(1000)]
    assert outcomes.count("asked") == PEER_USER_LOOKUP_BURST
    assert outcomes.count("later") == 1000 - PEER_USER_LOOKUP_BURST
    # Another peer still has its own budget, and known users cost nothing.
    assert await outcome("made-up-by-other", other) == "asked"
    assert await outcome("bob", other) == "found"  # asked once...
    assert {await outcome("bob", hostile) for _ in range(50)} == {"found"}  # ...then cached, for anyone
    # Many hostile peers together stop at the node-wide bound.
    many = [await outcome(f"made-up-{i}", node_key(f"peer-{i % 40}").node_id) for i in range(2000, 3000)]
    assert many.count("asked") < USER_LOOKUP_BURST
    assert port.calls.count("get_user") <= USER_LOOKUP_BURST + 1
    # A second later, a peer may look up again: a genuine new sender is only delayed.
    clock.advance(1)
    assert await outcome("made-up-after", hostile) == "asked"


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    fake = FakeClock()
    bucket = TokenBucket(fake, rate=2, burst=4)
    assert [bucket.take() for _ in range(5)] == [True] * 4 + [False]
    fake.advance(0.5)
    assert [bucket.take() for _ in range(2)] == [True, False]
    fake.advance(100)
    assert sum(bucket.take() for _ in range(10)) == 4  # never more than the burst, however long idle
