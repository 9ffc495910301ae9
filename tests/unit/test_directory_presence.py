"""Status hiding in the directory's answers (services/directory.py).

A user who blocks every user of the asking node is answered offline to that
node, with no status text and no block list: a blocked person who runs their
own node must not learn, from the directory, a status they are to be hidden
from. Real directory service and storage, fake clock; the answers are the
signed documents a node receives.
"""

from __future__ import annotations

from typing import Any

import pytest

from flamechat.crypto import b64encode
from flamechat.services.directory import DirectoryService, hidden_from_node
from flamechat.storage.records import PresenceEntry
from tests.unit import directory_support
from tests.unit.directory_support import NODE_KEY
from tests.unit.support import node_key

clock = directory_support.clock
directory_db_template = directory_support.directory_db_template
directory_service = directory_support.directory_service

MALLORY_NODE = node_key("mallory's own node")  # mallory alone
SHARED_NODE = node_key("shared")  # bob and eve
EMPTY_NODE = node_key("no users")  # a node home to no one


@pytest.fixture
async def directory(directory_service: DirectoryService) -> DirectoryService:
    """alice on the home node, mallory alone on hers, bob and eve on a shared one;
    alice is online and busy, and blocks mallory and eve; bob is online, blocking no one."""
    for name in ("mallory", "eve"):
        await directory_service.create_user(name, f"{name}-password")
    for key, url in ((MALLORY_NODE, "http://mallory.test"), (SHARED_NODE, "http://shared.test")):
        await directory_service.register_node(key.node_id, url, b64encode(key.public_key))
    await directory_service.register_node(
        EMPTY_NODE.node_id, "http://empty.test", b64encode(EMPTY_NODE.public_key)
    )
    for name, node in (
        ("alice", NODE_KEY),
        ("mallory", MALLORY_NODE),
        ("bob", SHARED_NODE),
        ("eve", SHARED_NODE),
    ):
        await directory_service.check_login(node.node_id, name, f"{name}-password")  # makes it their home
    await report(directory_service, ("mallory", "eve"))
    await directory_service.report_presence(SHARED_NODE.node_id, [PresenceEntry("bob", "online", "", ())])
    return directory_service


async def report(directory: DirectoryService, alice_blocks: tuple[str, ...]) -> None:
    await directory.report_presence(
        NODE_KEY.node_id, [PresenceEntry("alice", "busy", "in a call", alice_blocks)]
    )


async def listed(directory: DirectoryService, name: str, asking_node: str) -> dict[str, Any]:
    users = (await directory.users(asking_node=asking_node))["users"]
    found: dict[str, Any] = next(u for u in users if u["username"] == name)
    return found


def presence_of(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["online"], record["status"], record["status_text"], record["hidden_from"])


OFFLINE = (False, "offline", "", [])


async def test_a_node_all_of_whose_users_are_blocked_is_told_the_blocker_is_offline(
    directory: DirectoryService,
) -> None:
    # mallory's own node: in the list and in the single record alike.
    assert presence_of(await listed(directory, "alice", MALLORY_NODE.node_id)) == OFFLINE
    single = (await directory.user("alice", asking_node=MALLORY_NODE.node_id))["user"]
    assert presence_of(single) == OFFLINE
    # The rest of her record is still there: mallory's node can still deliver to her.
    assert (single["username"], single["node_url"]) == ("alice", "http://home.test")


async def test_a_shared_node_still_gets_the_status_with_the_blocks_it_must_enforce(
    directory: DirectoryService,
) -> None:
    # bob may see alice; eve, on the same node, is hidden from by that node.
    assert presence_of(await listed(directory, "alice", SHARED_NODE.node_id)) == (
        True,
        "busy",
        "in a call",
        ["eve"],
    )


async def test_a_node_home_to_no_one_gets_no_blockers_status_but_everyone_elses(
    directory: DirectoryService,
) -> None:
    assert presence_of(await listed(directory, "alice", EMPTY_NODE.node_id)) == OFFLINE
    assert presence_of(await listed(directory, "bob", EMPTY_NODE.node_id)) == (True, "online", "", [])


async def test_unblocking_shows_the_status_to_that_node_again(directory: DirectoryService) -> None:
    await report(directory, ("eve",))
    assert presence_of(await listed(directory, "alice", MALLORY_NODE.node_id)) == (
        True,
        "busy",
        "in a call",
        [],
    )
    assert presence_of(await listed(directory, "alice", SHARED_NODE.node_id))[3] == ["eve"]


@pytest.mark.parametrize(
    ("blocks", "node_users", "hidden"),
    [
        ((), (), False),  # blocks no one: shown everywhere
        ((), ("bob",), False),
        (("mallory",), ("mallory",), True),
        (("mallory", "eve"), ("eve",), True),
        (("eve",), ("bob", "eve"), False),  # bob there may see
        (("mallory",), (), True),  # a node of no one gets no blocker's status
    ],
)
def test_the_rule(blocks: tuple[str, ...], node_users: tuple[str, ...], hidden: bool) -> None:
    assert hidden_from_node(blocks, node_users) is hidden
