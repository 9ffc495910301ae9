"""The directory's per-node request rate (services/ratelimit.py::NodeRequests), and
what a node makes of its 429 (services/directory_view.py): busy, retry later —
not down. Real directory service and node storage in this process, fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from flamechat.protocol import errors
from flamechat.services.directory import DirectoryService
from flamechat.services.directory_view import DirectoryBusy, DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.ports import TransportError
from flamechat.services.ratelimit import NodeRequests
from flamechat.storage.database import Database
from tests.unit import directory_support
from tests.unit.directory_support import DIRECTORY_KEY, NODE_KEY, InProcessDirectory
from tests.unit.support import FakeClock, node_key

clock = directory_support.clock
directory_db_template = directory_support.directory_db_template
directory_service = directory_support.directory_service


async def test_one_node_flooding_is_refused_while_another_node_is_still_admitted() -> None:
    limit = NodeRequests(per_second=10)
    flooder, quiet = node_key("flooder").node_id, node_key("quiet").node_id
    for _ in range(10):
        await limit.admit(flooder)
    for _ in range(20):
        with pytest.raises(errors.RateLimited) as refused:
            await limit.admit(flooder)
        assert (refused.value.status, refused.value.code) == (429, "rate_limited")
        assert 1 <= refused.value.details["retry_after"] <= 2
    for _ in range(10):
        await limit.admit(quiet)  # the other node is not held up


class BusyDirectory(InProcessDirectory):
    """The directory, answering 429 (Retry-After 5 s) to every call while ``busy``."""

    busy = False

    async def _answer(self, name: str, call: Any) -> dict[str, Any]:
        if self.busy:
            call.close()
            self.calls.append(name)
            raise TransportError(
                "429",
                transient=True,
                status=429,
                code="rate_limited",
                peer_message="too many requests from your node",
                peer_details={"retry_after": 5},
            )
        return await super()._answer(name, call)


@pytest.fixture
def port(directory_service: DirectoryService) -> BusyDirectory:
    return BusyDirectory(directory_service, NODE_KEY.node_id)


async def test_a_node_told_429_waits_retry_after_and_answers_from_its_cache_meanwhile(
    port: BusyDirectory, node_db: Database, clock: FakeClock
) -> None:
    events = EventHub(clock)
    tab = events.subscribe("carol")  # a local viewer, who would be shown an "offline" banner
    view = DirectoryView(node_db, port, events, clock, pinned_key=DIRECTORY_KEY.public_key)
    await view.refresh()  # alice and bob are cached
    assert view.reachable is True
    while not tab.queue.empty():
        tab.queue.get_nowait()
    clock.advance(3600)  # the cache is old: every lookup asks the directory

    port.busy = True
    with pytest.raises(DirectoryBusy) as refused:
        await view.refresh()
    assert isinstance(refused.value, errors.DirectoryUnavailable)  # callers fall back on the cache
    assert (refused.value.status, refused.value.details["retry_after"]) == (429, 5)
    assert view.reachable is True  # busy, not down
    assert tab.queue.empty()  # no "directory offline" event to any tab
    asked = len(port.calls)

    # Retry-After 5 s: the node answers from its cache without asking again.
    clock.advance(2)
    assert (await view.resolve("bob")).username == "bob"
    with pytest.raises(DirectoryBusy):
        await view.refresh()
    assert len(port.calls) == asked

    # Once it has passed, the directory is asked again, and answers.
    port.busy = False
    clock.advance(3)
    assert {u.username for u in await view.refresh()} >= {"alice", "bob"}
    assert len(port.calls) == asked + 1
    assert view.reachable is True


async def test_a_429_on_a_password_check_does_not_hold_up_the_nodes_other_calls(
    port: BusyDirectory, node_db: Database, clock: FakeClock
) -> None:
    """The directory limits each account's password checks too: one account's 429 is
    no reason to stop asking the directory anything else."""
    view = DirectoryView(node_db, port, EventHub(clock), clock, pinned_key=DIRECTORY_KEY.public_key)
    port.busy = True
    with pytest.raises(errors.RateLimited):
        await view.check_login("alice", "alice-password", node_id=NODE_KEY.node_id)
    port.busy = False
    assert (await view.resolve("bob", max_age=0)).username == "bob"


async def test_page_loads_share_one_fetch_of_the_user_list(
    port: BusyDirectory, node_db: Database, clock: FakeClock
) -> None:
    """Every tab that opens asks for the user list: within a couple of seconds of a
    fetch, the node answers from the list it just cached instead of asking again."""
    view = DirectoryView(
        node_db, port, EventHub(clock), clock, pinned_key=DIRECTORY_KEY.public_key, list_max_age=2
    )
    first = await view.users()
    asked = port.calls.count("list_users")
    for _ in range(20):  # twenty tabs open within the second
        assert {u.username for u in await view.users()} == {u.username for u in first}
    assert port.calls.count("list_users") == asked
    clock.advance(2.5)
    await view.users()
    assert port.calls.count("list_users") == asked + 1
