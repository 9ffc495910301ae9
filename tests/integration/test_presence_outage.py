"""Presence while the directory is down or just back, with real processes:
a peer node that dies during an outage (and so cannot say so) has its users
shown offline, learned by asking it; and a node whose presence interval is
long reports again within seconds of the directory's return."""

from __future__ import annotations

import time

import pytest

from tests.conftest import PASSWORDS
from tests.integration.conftest import NetworkFactory
from tests.integration.peer import FakePeer
from tests.support import ApiSession, EventStream, eventually, login, server_errors

pytestmark = pytest.mark.integration


def _source(session: ApiSession) -> str:
    status, listed = session.call("GET", "/api/v1/users")
    assert status == 200, listed
    return str(listed["source"])


def test_a_peer_killed_during_a_directory_outage_has_its_users_shown_offline(
    network_factory: NetworkFactory,
) -> None:
    """bob's node dies without a word while the directory is down: nobody pushes
    "bob offline" and no directory TTL runs, so alice's node can only learn it by
    asking bob's node for its presence, and finding it gone."""
    net = network_factory()
    assert net.directory is not None
    node1, node2 = net.nodes
    alice = login(node1, "alice", PASSWORDS["alice"])
    bob = login(node2, "bob", PASSWORDS["bob"])
    bob_tab = EventStream(bob).__enter__()
    try:
        eventually(lambda: alice.listed("bob")["online"], what="bob online for alice")
        net.directory.kill()
        eventually(lambda: _source(alice) == "cache", what="alice's node working from its cache")
        assert alice.listed("bob")["online"]  # his node still answers: still online
        node2.kill()
        eventually(
            lambda: not alice.listed("bob")["online"], timeout=20, what="bob offline once his node is gone"
        )
    finally:
        bob_tab.close()
    assert server_errors(net) == []


def test_a_node_with_a_long_presence_interval_reports_again_soon_after_the_directory_returns(
    network_factory: NetworkFactory,
) -> None:
    """Reports every 30 s, and the directory forgets one after 3 s. bob's node
    noticed the outage (a user listing failed); when the directory comes back
    with bob's last report expired, it lists him online again within seconds
    rather than at the node's next scheduled round."""
    ttl = 3.0
    net = network_factory(nodes=1, presence_interval=30.0, presence_ttl=ttl)
    assert net.directory is not None
    directory = net.directory
    (node,) = net.nodes
    observer = FakePeer(directory.url)
    observer.register()

    def online_at_directory() -> set[str]:
        answer = observer.request("GET", directory.url + "/directory/v1/users")
        assert answer.status == 200, answer
        return {u["username"] for u in answer.body["users"] if u["online"]}

    bob = login(node, "bob", PASSWORDS["bob"])
    with EventStream(bob):
        eventually(lambda: "bob" in online_at_directory(), what="bob online at the directory")
        reported = time.monotonic()  # at the latest; nothing reports again for 30 s
        directory.kill()
        eventually(lambda: _source(bob) == "cache", what="bob's node sees the directory down")
        time.sleep(max(0.0, reported + ttl + 0.5 - time.monotonic()))  # let that report expire
        directory.restart()
        eventually(
            lambda: "bob" in online_at_directory(), timeout=10, what="bob online again at the directory"
        )
    assert server_errors(net) == []
