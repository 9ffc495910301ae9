"""Presence pushed node to node: with the directory polled only once a minute,
a colleague on another node coming online, changing status, hiding it from a
blocked person and going offline reaches the viewer's user list anyway, and
only the home node of a user may speak for that user."""

from __future__ import annotations

from typing import Any

import pytest

from flamechat.devnet import DevNetwork
from tests.conftest import PASSWORDS
from tests.integration.conftest import NetworkFactory
from tests.integration.peer import FakePeer
from tests.support import EventStream, eventually, login

pytestmark = pytest.mark.integration

# Far longer than any wait below: what the viewers see can only have been pushed.
POLL = 120.0
WAIT = 20.0


def _network(network_factory: NetworkFactory) -> DevNetwork:
    return network_factory(presence_interval=POLL, presence_ttl=3 * POLL)


def _live(stream: EventStream, username: str) -> dict[str, Any] | None:
    """The last presence of ``username`` pushed to this open tab, if any."""
    seen = [e for e in stream.received() if e.get("type") == "presence" and e.get("username") == username]
    return seen[-1] if seen else None


def _becomes(stream: EventStream, username: str, what: str, **expected: Any) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        last = _live(stream, username)
        return last if last is not None and all(last.get(k) == v for k, v in expected.items()) else None

    found: dict[str, Any] = eventually(check, timeout=WAIT, what=what)
    return found


def test_status_changes_reach_open_tabs_on_another_node_without_waiting_for_the_poll(
    network_factory: NetworkFactory,
) -> None:
    """Only the viewers' event streams are read: listing users would ask the
    directory, and so prove nothing about the push."""
    net = _network(network_factory)
    node1, node2 = net.nodes
    alice = login(node1, "alice", PASSWORDS["alice"])
    carol = login(node1, "carol", PASSWORDS["carol"])
    bob = login(node2, "bob", PASSWORDS["bob"])

    with EventStream(alice) as alice_tab, EventStream(carol) as carol_tab:
        with EventStream(bob):
            _becomes(alice_tab, "bob", "bob online in alice's tab", online=True, status="online")

            busy = {"status": "busy", "status_text": "board meeting"}
            status, body = bob.call("PUT", "/api/v1/me/status", busy)
            assert status == 200, body
            _becomes(alice_tab, "bob", "bob busy in alice's tab", status="busy", status_text="board meeting")
            _becomes(carol_tab, "bob", "bob busy in carol's tab", status="busy")

            # bob blocks carol: his status leaves her tab, and stays in alice's.
            status, body = bob.call("PUT", "/api/v1/blocks/carol", {})
            assert status == 200, body
            _becomes(
                carol_tab, "bob", "bob hidden from carol", online=False, status="offline", status_text=""
            )
            away = {"status": "away", "status_text": "back at 3"}
            assert bob.call("PUT", "/api/v1/me/status", away)[0] == 200
            _becomes(alice_tab, "bob", "bob away in alice's tab", status="away", status_text="back at 3")
            assert _live(carol_tab, "bob")["online"] is False  # type: ignore[index]

        _becomes(alice_tab, "bob", "bob offline in alice's tab, his tab closed", online=False)


def test_a_node_may_not_push_presence_for_users_it_does_not_host(network_factory: NetworkFactory) -> None:
    net = _network(network_factory)
    node1, node2 = net.nodes
    assert net.directory is not None
    alice = login(node1, "alice", PASSWORDS["alice"])
    bob = login(node2, "bob", PASSWORDS["bob"])

    assert not alice.listed("bob")["online"]  # node 1 knows bob, from the directory

    with EventStream(alice) as alice_tab:
        mallory = FakePeer(net.directory.url)
        mallory.register()
        claim = {"users": [{"username": "bob", "status": "busy", "status_text": "forged"}]}
        answer = mallory.request("PUT", node1.url + "/federation/v1/presence", claim)
        assert answer.status == 204, answer  # accepted, and ignored: bob lives on node 2
        unsigned = mallory.request("PUT", node1.url + "/federation/v1/presence", claim, sign=False)
        assert (unsigned.status, unsigned.code) == (401, "bad_signature")

        # bob's own node speaks for him next; alice's tab heard nothing before it.
        with EventStream(bob):
            _becomes(alice_tab, "bob", "bob online in alice's tab", online=True, status="online")
        seen = [e for e in alice_tab.received() if e.get("type") == "presence" and e.get("username") == "bob"]
        assert all(e["status_text"] != "forged" for e in seen), seen
