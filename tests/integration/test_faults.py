"""Issue 3, fault injection: real processes killed with SIGKILL and restarted,
a relay carrying 100 messages for a dead node, a directory outage, and a
relay that hangs or fails. Each test has a network of its own."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from flamechat.crypto import NodeKey
from flamechat.devnet import Server, http_json
from flamechat.keyfile import load_or_create_key
from tests.conftest import PASSWORDS
from tests.integration.conftest import NetworkFactory
from tests.integration.peer import FakePeer
from tests.integration.stub import BadServer
from tests.support import ApiSession, EventStream, eventually, login, server_errors

pytestmark = pytest.mark.integration

# Short retry schedule so that a restarted peer is noticed within a second or two.
FAST_RETRY = ["--retry-base", "0.2", "--retry-max", "1"]
RESTART_WAIT = 40.0  # generous bound for a delivery after processes restart on a busy machine


def node_key(node: Server) -> NodeKey:
    """A node's own key, read from its data folder (to speak as that node)."""
    return load_or_create_key(Path(node.args[node.args.index("--data-dir") + 1]) / "node.key")


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["body"] for m in messages]


def incoming(session: ApiSession, peer: str) -> list[dict[str, Any]]:
    return [m for m in session.history(peer) if m["direction"] == "in"]


def wait_for_texts(session: ApiSession, peer: str, want: list[str], timeout: float = RESTART_WAIT) -> None:
    eventually(
        lambda: set(want) <= set(texts(incoming(session, peer))),
        timeout=timeout,
        what=f"{len(want)} messages from {peer} at {session.username}",
    )


def test_a_message_accepted_before_sigkill_is_delivered_after_restart(
    network_factory: NetworkFactory,
) -> None:
    net = network_factory(node_args=[[*FAST_RETRY, "--relay-after", "600"], []])
    node1, node2 = net.nodes
    alice = login(node1, "alice", PASSWORDS["alice"])
    bob = login(node2, "bob", PASSWORDS["bob"])

    # bob's node is down, so when alice's node dies the message can only be in its outbox.
    node2.kill()
    sent = alice.send("bob", "written just before the crash")
    node1.kill()
    node2.restart()
    node1.restart()

    # Both browsers keep the sessions they had: nobody logs in again.
    wait_for_texts(bob, "alice", ["written just before the crash"])
    assert [(m["id"], m["body"]) for m in incoming(bob, "alice")] == [(sent["id"], sent["body"])]
    eventually(
        lambda: alice.history("bob")[-1]["state"] == "delivered",
        timeout=RESTART_WAIT,
        what="alice sees her message delivered",
    )

    # Killed again right after a burst of 201s, with deliveries in flight.
    burst = [f"burst {i}" for i in range(10)]
    for text in burst:
        alice.send("bob", text)
    node1.kill()
    node1.restart()
    wait_for_texts(bob, "alice", burst)
    assert texts(incoming(bob, "alice")) == ["written just before the crash", *burst]  # once each, in order
    assert texts(alice.history("bob")) == ["written just before the crash", *burst]
    assert server_errors(net) == []


def test_a_relay_holds_100_messages_until_the_recipients_node_returns(
    network_factory: NetworkFactory,
) -> None:
    net = network_factory(
        nodes=3,
        node_args=[
            [*FAST_RETRY, "--relay-after", "1"],  # alice's node: give up on bob's node quickly
            ["--relay-collect-interval", "1"],  # bob's node
            [],  # a relay (every node offers relaying by default)
        ],
    )
    node1, node2, relay = net.nodes
    alice = login(node1, "alice", PASSWORDS["alice"])
    bob = login(node2, "bob", PASSWORDS["bob"])
    node2.kill()

    sent = [f"while you were away {i:03d}" for i in range(100)]
    ids = [alice.send("bob", text)["id"] for text in sent]
    # "sent" means bob's node or a relay took it; bob's node is dead, so a relay did.
    eventually(
        lambda: [m["state"] for m in alice.history("bob")] == ["sent"] * 100,
        timeout=60,
        what="all 100 deposited at the relay",
    )
    node1.kill()  # the sender is gone too: only the relay has them now
    as_node2 = FakePeer(net.directory.url if net.directory else "", key=node_key(node2))
    held = as_node2.request("GET", relay.url + "/federation/v1/relay/envelopes?limit=500")
    assert held.status == 200, held
    assert [item["envelope"]["id"] for item in held.body["envelopes"]] == ids  # sealed, so ids only

    node2.restart()
    wait_for_texts(bob, "alice", sent, timeout=60)
    got = incoming(bob, "alice")
    assert [m["id"] for m in got] == ids  # all of them, in the order alice wrote them, once each
    assert texts(got) == sent

    # The relay deleted what bob's node acknowledged: asked as bob's node, it holds nothing more.
    eventually(
        lambda: (
            as_node2.request("GET", relay.url + "/federation/v1/relay/envelopes").body == {"envelopes": []}
        ),
        what="the relay emptied after acknowledgement",
    )
    assert [m["id"] for m in incoming(bob, "alice")] == ids
    assert server_errors(net) == []


def held_at(relay: Server, as_node: FakePeer) -> list[str]:
    """Ids of the envelopes ``relay`` holds for ``as_node`` (asking without acknowledging)."""
    answer = as_node.request("GET", relay.url + "/federation/v1/relay/envelopes?limit=500")
    assert answer.status == 200, answer
    return [item["envelope"]["id"] for item in answer.body["envelopes"]]


def test_a_restarted_node_collects_from_the_relays_at_start_up(network_factory: NetworkFactory) -> None:
    """Collection is hourly here: only the start-up collection can fetch what a
    relay took while bob's node was down, before anyone uses bob's session."""
    net = network_factory(
        nodes=3,
        node_args=[[*FAST_RETRY, "--relay-after", "1"], ["--relay-collect-interval", "3600"], []],
    )
    node1, node2, relay = net.nodes
    alice = login(node1, "alice", PASSWORDS["alice"])
    bob = login(node2, "bob", PASSWORDS["bob"])
    node2.kill()
    sent = [f"kept at the relay {i}" for i in range(3)]
    ids = [alice.send("bob", text)["id"] for text in sent]
    eventually(
        lambda: [m["state"] for m in alice.history("bob")] == ["sent"] * 3,
        timeout=60,
        what="all three deposited at the relay",
    )
    as_node2 = FakePeer(net.directory.url if net.directory else "", key=node_key(node2))
    assert held_at(relay, as_node2) == ids

    node2.restart()
    eventually(lambda: held_at(relay, as_node2) == [], timeout=30, what="collected at start-up")
    wait_for_texts(bob, "alice", sent)  # bob's old session opens what was collected
    assert [m["id"] for m in incoming(bob, "alice")] == ids
    assert server_errors(net) == []


def test_a_login_collects_from_the_relays_at_once(network_factory: NetworkFactory) -> None:
    """Collection is hourly here: an envelope a relay holds for bob's node is
    collected when bob logs in, not an hour later."""
    net = network_factory(nodes=3, node_args=[[], ["--relay-collect-interval", "3600"], []])
    assert net.directory is not None
    _node1, node2, relay = net.nodes
    login(node2, "bob", PASSWORDS["bob"])  # his first login publishes his keys
    dave_node = FakePeer(net.directory.url)
    dave_node.register()
    dave_node.adopt("dave", PASSWORDS["dave"])
    wire = dave_node.seal("dave", "bob", "left at a relay while you were out")
    deposit = {"recipient_node": node_key(node2).node_id, "envelope": wire}
    answer = dave_node.request("PUT", f"{relay.url}/federation/v1/relay/envelopes/{wire['id']}", deposit)
    assert answer.status == 200, answer
    as_node2 = FakePeer(net.directory.url, key=node_key(node2))
    time.sleep(2)  # nothing collects it on its own: the next round is an hour away
    assert held_at(relay, as_node2) == [wire["id"]]

    bob = login(node2, "bob", PASSWORDS["bob"])
    eventually(lambda: held_at(relay, as_node2) == [], what="collected at bob's login")
    wait_for_texts(bob, "dave", ["left at a relay while you were out"], timeout=15)
    assert server_errors(net) == []


def test_the_network_degrades_but_works_while_the_directory_is_down(network_factory: NetworkFactory) -> None:
    net = network_factory(node_args=[FAST_RETRY, FAST_RETRY])
    assert net.directory is not None
    node1, node2 = net.nodes
    alice = login(node1, "alice", PASSWORDS["alice"])
    bob = login(node2, "bob", PASSWORDS["bob"])
    alice.send("bob", "before the outage")
    wait_for_texts(bob, "alice", ["before the outage"])
    status, listed = alice.call("GET", "/api/v1/users")
    assert (status, listed["source"]) == (200, "directory")

    net.directory.kill()

    # A user who logged in on this node before still gets in, with a new session.
    again = login(node1, "alice", PASSWORDS["alice"])
    assert again.cookie != alice.cookie
    status, me = again.call("GET", "/api/v1/me")
    assert (status, me["directory"]) == (200, "offline")
    # Someone this node never saw cannot: the answer says why, it is not a crash.
    status, body, _ = http_json(
        "POST", node1.url + "/api/v1/sessions", {"username": "carol", "password": PASSWORDS["carol"]}
    )
    assert (status, body["error"]["code"]) == (503, "directory_unavailable")

    def bob_as_alice_sees_him() -> dict[str, Any]:
        listed = again.users()
        assert listed["source"] == "cache"
        found: dict[str, Any] = next(u for u in listed["users"] if u["username"] == "bob")
        return found

    assert bob_as_alice_sees_him()["online"] is False
    # Presence comes straight from bob's node now: his open tab makes him online...
    with EventStream(bob):
        eventually(lambda: bob_as_alice_sees_him()["online"], what="bob online, learned from his node")
    # ...and closing it makes him offline.
    eventually(lambda: not bob_as_alice_sees_him()["online"], what="bob offline after his tab closed")

    # Messaging between known users continues, both ways.
    again.send("bob", "during the outage")
    wait_for_texts(bob, "alice", ["during the outage"])
    bob.send("alice", "got it, directory or not")
    wait_for_texts(again, "bob", ["got it, directory or not"])

    net.directory.restart()
    eventually(
        lambda: again.call("GET", "/api/v1/users")[1].get("source") == "directory",
        what="user list from the directory again",
    )
    assert texts(incoming(bob, "alice")) == ["before the outage", "during the outage"]
    assert server_errors(net) == []


def test_a_hanging_or_failing_relay_never_blocks_healthy_peers(network_factory: NetworkFactory) -> None:
    net = network_factory(
        nodes=3,
        node_args=[
            [*FAST_RETRY, "--relay-after", "0.5"],  # alice: tries the relay almost at once
            ["--no-relay"],  # bob: healthy, and not a relay
            ["--no-relay"],  # carol: about to die
        ],
    )
    assert net.directory is not None
    node1, node2, node3 = net.nodes
    alice = login(node1, "alice", PASSWORDS["alice"])
    bob = login(node2, "bob", PASSWORDS["bob"])
    carol = login(node3, "carol", PASSWORDS["carol"])

    with BadServer("hang") as relay:
        # The only relay the directory knows is this stub.
        FakePeer(net.directory.url, url=relay.url).register(relay=True)
        node3.kill()
        for_carol = [f"for carol {i}" for i in range(3)]
        for text in for_carol:
            alice.send("carol", text)
        deposits = "/federation/v1/relay/envelopes/"  # PUT …/{id}; collections GET …?limit=
        eventually(
            lambda: relay.holding("PUT", deposits), timeout=30, what="a deposit hanging at the stub relay"
        )

        alice.send("bob", "not stuck behind the relay")
        wait_for_texts(bob, "alice", ["not stuck behind the relay"], timeout=8)  # under the 10 s timeout
        assert relay.holding("PUT", deposits), "the deposit should still be hanging while bob got his message"

        relay.set_mode("error")
        deposits_before = len(relay.calls("PUT"))
        eventually(lambda: len(relay.calls("PUT")) > deposits_before, what="a deposit answered with 500")
        alice.send("bob", "nor behind a failing one")
        wait_for_texts(bob, "alice", ["nor behind a failing one"], timeout=8)

        # carol's messages wait in the outbox: neither lost nor failed.
        assert [m["state"] for m in alice.history("carol")] == ["pending"] * 3
        node3.restart()
        wait_for_texts(carol, "alice", for_carol)
        assert texts(incoming(carol, "alice")) == for_carol
    assert server_errors(net) == []
