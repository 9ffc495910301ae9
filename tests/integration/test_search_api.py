"""GET /api/v1/search on real nodes: the person and date filters, what the
browser's search box does not show, and that a user only ever finds their own
copy of a conversation."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import pytest

from flamechat.devnet import DevNetwork
from tests.conftest import PASSWORDS
from tests.support import ApiSession, eventually, login, server_errors

pytestmark = pytest.mark.integration


def search(session: ApiSession, q: str, **params: Any) -> list[str]:
    status, body = session.call("GET", "/api/v1/search?" + urlencode({"q": q, **params}))
    assert status == 200, body
    return sorted(hit["message"]["body"] for hit in body["messages"])


def sent_at(session: ApiSession, peer: str, message_id: str) -> int:
    found: int = next(m["sent_at"] for m in session.history(peer) if m["id"] == message_id)
    return found


def test_search_filters_by_person_and_by_date(network: DevNetwork) -> None:
    node1, node2 = network.nodes
    alice = login(node1, "alice", PASSWORDS["alice"])
    bob = login(node2, "bob", PASSWORDS["bob"])
    carol = login(node1, "carol", PASSWORDS["carol"])

    first = alice.send("bob", "pelican briefing one")
    time.sleep(0.05)  # the next message's sent_at is later, to the millisecond
    second = alice.send("carol", "pelican briefing two")
    time.sleep(0.05)
    third = alice.send("bob", "pelican briefing three")
    t1, t2, t3 = (sent_at(alice, p, m["id"]) for p, m in (("bob", first), ("carol", second), ("bob", third)))
    assert t1 < t2 < t3

    everything = ["pelican briefing one", "pelican briefing three", "pelican briefing two"]
    assert search(alice, "pelican") == everything
    assert search(alice, "pelican", peer="bob") == ["pelican briefing one", "pelican briefing three"]
    assert search(alice, "pelican", peer="carol") == ["pelican briefing two"]
    assert search(alice, "pelican", peer="dave") == []
    assert search(alice, "pelican", since=t2) == ["pelican briefing three", "pelican briefing two"]
    assert search(alice, "pelican", until=t2) == ["pelican briefing one"]  # until is exclusive
    assert search(alice, "pelican", since=t2, until=t3) == ["pelican briefing two"]
    assert search(alice, "pelican", peer="bob", since=t2) == ["pelican briefing three"]
    assert search(alice, "pelican", limit=1) != []

    # Bob finds his own copies, from alice; carol, on alice's node, only hers.
    eventually(lambda: len(search(bob, "pelican", peer="alice")) == 2, what="bob's copies")
    assert search(bob, "pelican", peer="alice", until=t2) == ["pelican briefing one"]
    eventually(lambda: search(carol, "pelican") == ["pelican briefing two"], what="carol's copy")


@pytest.mark.parametrize(
    "params",
    [
        {"q": "pelican", "peer": "not a name!"},
        {"q": "pelican", "since": "yesterday"},
        {"q": "pelican", "until": -1},
        {"q": "pelican", "limit": 0},
        {"q": "pelican", "limit": 51},
        {"q": ""},
        {"q": "x" * 201},
    ],
)
def test_a_bad_search_parameter_is_a_clear_422(network: DevNetwork, params: dict[str, Any]) -> None:
    alice = login(network.nodes[0], "alice", PASSWORDS["alice"])
    status, body = alice.call("GET", "/api/v1/search?" + urlencode(params))
    assert (status, body["error"]["code"]) == (422, "invalid_request"), body


def test_no_request_ended_in_a_server_error(network: DevNetwork) -> None:
    assert server_errors(network) == []
