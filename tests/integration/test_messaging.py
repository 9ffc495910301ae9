"""Issue 2 end to end: a real directory and two real nodes on loopback, users
logged in through the local API, messages across nodes and on one node, and
every kind of bad input answered with a clear 4xx that stores nothing."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from flamechat.crypto import NodeKey, sign_request
from flamechat.devnet import DevNetwork, http_json
from flamechat.protocol.ids import new_id
from tests.conftest import PASSWORDS, make_network
from tests.integration.peer import FakePeer
from tests.support import ApiSession, eventually, login, raw_request, server_errors

pytestmark = pytest.mark.integration

ERIN_PASSWORD = "erin-password"  # lives on the test's own fake node
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = make_network(tmp_path_factory.mktemp("messaging"), users={**PASSWORDS, "erin": ERIN_PASSWORD})
    try:
        yield network
    finally:
        network.stop()


@pytest.fixture(scope="module")
def users(net: DevNetwork) -> dict[str, ApiSession]:
    """alice and carol on node 1, bob and dave on node 2."""
    node1, node2 = net.nodes
    homes = {"alice": node1, "carol": node1, "bob": node2, "dave": node2}
    return {name: login(node, name, PASSWORDS[name]) for name, node in homes.items()}


@pytest.fixture(scope="module")
def erin(net: DevNetwork, users: dict[str, ApiSession]) -> FakePeer:
    """A third node of the test's own, home of erin, able to sign anything."""
    assert net.directory is not None
    return FakePeer.home_of(net.directory.url, "erin", ERIN_PASSWORD)


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["body"] for m in messages]


def history_of(session: ApiSession, peer: str, want: list[str]) -> list[dict[str, Any]]:
    """``session``'s conversation with ``peer`` once every text of ``want`` is in it."""

    def check() -> list[dict[str, Any]] | None:
        messages = session.history(peer)
        return messages if set(want) <= set(texts(messages)) else None

    found: list[dict[str, Any]] = eventually(check, what=f"{want} in {session.username}'s history")
    return found


# --- messages ------------------------------------------------------------------


def test_a_message_each_way_across_nodes(users: dict[str, ApiSession]) -> None:
    alice, bob = users["alice"], users["bob"]
    first = alice.send("bob", "hello bob, from node 1")
    assert first["state"] == "pending"
    second = alice.send("bob", "are you there?")

    at_bob = history_of(bob, "alice", ["hello bob, from node 1", "are you there?"])
    assert texts(at_bob) == ["hello bob, from node 1", "are you there?"]
    assert [m["id"] for m in at_bob] == [first["id"], second["id"]]
    assert all(m["direction"] == "in" and m["sender"] == "alice" for m in at_bob)

    reply = bob.send("alice", "yes, here on node 2")
    at_alice = history_of(alice, "bob", ["yes, here on node 2"])
    assert texts(at_alice) == ["hello bob, from node 1", "are you there?", "yes, here on node 2"]
    assert at_alice[-1]["id"] == reply["id"]
    assert at_alice[-1]["direction"] == "in"

    # The sender sees its messages go from pending to delivered (bob's node sent receipts).
    eventually(
        lambda: all(m["state"] == "delivered" for m in alice.history("bob") if m["direction"] == "out"),
        what="delivery receipts at alice",
    )


def test_history_is_paged_by_cursor_in_order(users: dict[str, ApiSession]) -> None:
    carol, dave = users["carol"], users["dave"]
    sent = [f"page test {i}" for i in range(7)]
    for text in sent:
        carol.send("dave", text)
    history_of(dave, "carol", sent)

    for session, peer in ((dave, "carol"), (carol, "dave")):
        pages: list[list[str]] = []
        cursor: str | None = None
        for _ in range(10):  # bounded: 7 messages in pages of 3
            query = f"/api/v1/conversations/{peer}/messages?limit=3"
            if cursor:
                query += f"&before={cursor}"
            status, body = session.call("GET", query)
            assert status == 200, body
            pages.append(texts(body["messages"]))
            cursor = body["next_cursor"]
            if cursor is None:
                break
        # Newest page first, each page oldest first; the last page says there is no more.
        assert pages == [sent[4:7], sent[1:4], sent[0:1]]

        status, body = session.call("GET", f"/api/v1/conversations/{peer}/messages?before=not-a-cursor")
        assert status == 422, body
        assert body["error"]["field"] == "before"


def test_a_message_to_someone_on_the_same_node(users: dict[str, ApiSession]) -> None:
    alice, carol = users["alice"], users["carol"]
    sent = alice.send("carol", "same node, hi carol")
    at_carol = history_of(carol, "alice", ["same node, hi carol"])
    assert [(m["id"], m["direction"]) for m in at_carol] == [(sent["id"], "in")]
    eventually(lambda: alice.history("carol")[-1]["state"] == "delivered", what="same-node delivery receipt")


def test_resending_with_the_same_id_makes_no_duplicate(users: dict[str, ApiSession]) -> None:
    carol, bob = users["carol"], users["bob"]
    message_id = new_id()
    first = carol.send("bob", "only once please", message_id=message_id)
    again = carol.send("bob", "only once please", message_id=message_id)  # the browser retried
    assert again["id"] == first["id"] == message_id
    assert again["seq"] == first["seq"]

    status, body = carol.call(
        "POST", "/api/v1/conversations/bob/messages", {"id": message_id, "body": "something else"}
    )
    assert status == 409, body

    carol.send("bob", "a later message")
    at_bob = history_of(bob, "carol", ["only once please", "a later message"])
    assert texts(at_bob) == ["only once please", "a later message"]
    assert texts(carol.history("bob")) == ["only once please", "a later message"]


# --- bad input -------------------------------------------------------------------


def test_wrong_password_is_401_with_a_code(net: DevNetwork, users: dict[str, ApiSession]) -> None:
    status, body, headers = http_json(
        "POST", net.nodes[0].url + "/api/v1/sessions", {"username": "alice", "password": "not-her-password"}
    )
    assert status == 401, body
    assert body["error"]["code"] == "invalid_credentials"
    assert "set-cookie" not in {k.lower() for k in headers}


def test_unknown_user_is_404(users: dict[str, ApiSession]) -> None:
    alice = users["alice"]
    status, body = alice.call("GET", "/api/v1/users/nobody")
    assert status == 404, body
    assert body["error"]["code"] == "unknown_user"
    status, body = alice.call("POST", "/api/v1/conversations/nobody/messages", {"body": "hello?"})
    assert status == 404, body
    assert body["error"]["code"] == "unknown_user"


def test_a_message_over_64_kib_is_413(users: dict[str, ApiSession]) -> None:
    alice, bob = users["alice"], users["bob"]
    for too_big in ("x" * (MAX_BODY + 1), "é" * (MAX_BODY // 2 + 1)):  # bytes of UTF-8, not characters
        status, body = alice.call("POST", "/api/v1/conversations/bob/messages", {"body": too_big})
        assert status == 413, body
        assert body["error"]["code"] == "message_too_large"
        assert body["error"]["field"] == "body"
    largest = "y" * MAX_BODY
    alice.send("bob", largest)
    assert largest in texts(history_of(bob, "alice", [largest]))
    assert not [m for m in alice.history("bob") if len(m["body"]) > MAX_BODY]


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/api/v1/conversations/bob/messages", {"text": "wrong name"}, "body"),
        ("/api/v1/conversations/bob/messages", {"body": 42}, "body"),
        ("/api/v1/conversations/bob/messages", {"body": "hi", "id": "not-a-uuid"}, "id"),
        ("/api/v1/sessions", {"username": "alice"}, "password"),
        ("/api/v1/sessions", {"username": "Not A Name!", "password": "x"}, "username"),
    ],
)
def test_malformed_json_is_422_naming_the_field(
    users: dict[str, ApiSession], path: str, payload: dict[str, Any], field: str
) -> None:
    status, body = users["alice"].call("POST", path, payload)
    assert status == 422, body
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["field"] == field


def test_a_body_that_is_not_json_is_422(users: dict[str, ApiSession]) -> None:
    alice = users["alice"]
    headers = {"Cookie": alice.cookie, "X-CSRF-Token": alice.csrf, "Content-Type": "application/json"}
    answer = raw_request(
        "POST", alice.node.url + "/api/v1/conversations/bob/messages", b'{"body": "unterminated', headers
    )
    assert answer.status == 422, answer
    assert answer.code == "invalid_request"
    assert answer.body["error"]["field"] == "body"


def test_a_state_change_without_the_csrf_header_is_403(users: dict[str, ApiSession]) -> None:
    alice, dave = users["alice"], users["dave"]
    before = alice.history("dave")
    status, body = alice.call(
        "POST", "/api/v1/conversations/dave/messages", {"body": "forged by another site"}, csrf=False
    )
    assert status == 403, body
    assert body["error"]["code"] == "csrf_failed"
    forged = ApiSession(alice.node, alice.username, alice.cookie, "0" * len(alice.csrf))
    status, body = forged.call(
        "POST", "/api/v1/conversations/dave/messages", {"body": "forged by another site"}
    )
    assert status == 403, body
    status, body = alice.call("DELETE", "/api/v1/sessions/current", csrf=False)
    assert status == 403, body

    assert alice.history("dave") == before
    alice.send("dave", "the real one")  # the session still works: nothing was logged out
    assert "forged by another site" not in texts(history_of(dave, "alice", ["the real one"]))


# --- federation: forged requests store nothing -------------------------------------


def test_forged_federation_requests_are_401_and_store_nothing(
    net: DevNetwork, users: dict[str, ApiSession], erin: FakePeer
) -> None:
    dave = users["dave"]
    node2 = net.nodes[1].url
    envelope = erin.seal("erin", "dave", "from erin, forged?")

    refused = {
        "unsigned": erin.deliver(node2, envelope, sign=False),
        "signed over other bytes": erin.deliver(node2, envelope, signed_body=b'{"id": "other"}'),
        "signed by an unknown node": FakePeer(erin.directory_url).deliver(node2, envelope),
        "signed an hour ago": erin.deliver(node2, envelope, timestamp=int(time.time()) - 3600),
    }
    # Replayed: a nonce already seen (here on a harmless GET) may never be used again.
    nonce = "replayed-nonce-" + new_id()
    seen = erin.request("GET", f"{node2}/federation/v1/presence", nonce=nonce)
    assert seen.status == 200, seen
    refused["replayed nonce"] = erin.deliver(node2, envelope, nonce=nonce)

    codes = {name: (answer.status, answer.code) for name, answer in refused.items()}
    assert codes == {
        "unsigned": (401, "bad_signature"),
        "signed over other bytes": (401, "bad_signature"),
        "signed by an unknown node": (401, "unknown_node"),
        "signed an hour ago": (401, "replayed_request"),
        "replayed nonce": (401, "replayed_request"),
    }
    assert dave.history("erin") == []

    # The same envelope, properly signed, is stored: so the refusals above were the signatures'.
    stamp, nonce = int(time.time()), "genuine-nonce-" + new_id()
    accepted = erin.deliver(node2, envelope, timestamp=stamp, nonce=nonce)
    assert accepted.status == 200, accepted
    assert accepted.body == {"id": envelope["id"], "status": "stored"}
    assert texts(dave.history("erin")) == ["from erin, forged?"]

    # The very same request again, byte for byte: a replay.
    again = erin.deliver(node2, envelope, timestamp=stamp, nonce=nonce)
    assert (again.status, again.code) == (401, "replayed_request")
    assert texts(dave.history("erin")) == ["from erin, forged?"]


def test_an_envelope_a_node_may_not_deliver_is_refused(
    net: DevNetwork, users: dict[str, ApiSession], erin: FakePeer
) -> None:
    """erin's envelope handed over by a node that is not erin's home, and an
    envelope whose sender signature was tampered with, are refused."""
    dave = users["dave"]
    node2 = net.nodes[1].url
    assert net.directory is not None
    stranger = FakePeer(net.directory.url, key=NodeKey.generate())
    stranger.register()
    envelope = erin.seal("erin", "dave", "carried by a stranger")
    answer = stranger.deliver(node2, envelope)
    assert answer.status == 403, answer

    tampered = erin.seal("erin", "dave", "tampered in transit")
    tampered["sent_at"] += 1  # the sender's outer signature covers it
    answer = erin.deliver(node2, tampered)
    assert answer.status == 403, answer
    assert answer.code == "envelope_rejected"

    malformed = {**erin.seal("erin", "dave", "x"), "ciphertext": None}
    answer = erin.deliver(node2, malformed)
    assert answer.status == 422, answer
    assert answer.body["error"]["field"] == "ciphertext"

    assert "carried by a stranger" not in texts(dave.history("erin"))
    assert "tampered in transit" not in texts(dave.history("erin"))


def test_a_peer_hanging_up_mid_request_is_no_server_error(net: DevNetwork, erin: FakePeer) -> None:
    """A peer killed while it sends (its body cut short) leaves no stack trace behind."""
    node2 = net.nodes[1]
    envelope = json.dumps(erin.seal("erin", "dave", "cut short")).encode()
    for method, path in (
        ("PUT", f"/federation/v1/envelopes/{new_id()}"),
        ("GET", "/federation/v1/relay/envelopes"),  # read while checking the signature
        ("POST", "/api/v1/sessions"),
    ):
        signed = sign_request(erin.key, method, path, envelope, timestamp=int(time.time()))
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in signed.as_dict().items())
        head += f"Content-Length: {len(envelope)}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", node2.port), timeout=10) as sock:
            sock.sendall(head.encode() + envelope[: len(envelope) // 2])
        # The node notices the hang-up, and still answers the next caller.
        eventually(lambda: http_json("GET", node2.url + "/healthz")[0] == 200, what="node 2 alive")
    eventually(lambda: "went away" in node2.log_path.read_text(), what="the hang-ups noticed")
    assert server_errors(net) == []


def test_no_request_ended_in_a_server_error(net: DevNetwork) -> None:
    """Runs last in this module: nothing above produced a 500 or a stack trace."""
    assert server_errors(net) == []
