"""Replying to a message on real nodes: the reply names the message it answers
(inside the sealed envelope), and each side shows the quote from its own copy,
so an edit or a deletion of the quoted message shows in the quote too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flamechat.devnet import DevNetwork
from flamechat.protocol.ids import new_id
from tests.conftest import make_network
from tests.support import ApiSession, EventStream, eventually, server_errors

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = make_network(tmp_path_factory.mktemp("replies"))
    try:
        yield network
    finally:
        network.stop()


def reply(session: ApiSession, peer: str, text: str, to: str) -> tuple[int, dict[str, Any]]:
    return session.call("POST", f"/api/v1/conversations/{peer}/messages", {"body": text, "reply_to": to})


def arrived(session: ApiSession, peer: str, message_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        return next((m for m in session.history(peer) if m["id"] == message_id), None)

    found: dict[str, Any] = eventually(check, timeout=30, what=f"{message_id} at {session.username}")
    return found


def test_a_reply_quotes_the_message_it_answers_on_both_sides(alice: ApiSession, bob: ApiSession) -> None:
    question = alice.send("bob", "Can you send the signed NDA by Friday?")
    arrived(bob, "alice", question["id"])
    with EventStream(alice) as alice_tab:
        status, answer = reply(bob, "alice", "Yes, it is with legal now", question["id"])
        assert status == 201, answer
        assert answer["reply_to"] == {
            "id": question["id"],
            "sender": "alice",
            "text": "Can you send the signed NDA by Friday?",
            "deleted": False,
        }
        seen = arrived(alice, "bob", answer["id"])
        assert seen["reply_to"]["id"] == question["id"]
        assert seen["reply_to"]["text"] == "Can you send the signed NDA by Friday?"
        live = eventually(
            lambda: [
                e
                for e in alice_tab.received()
                if e.get("type") == "message" and e["message"]["id"] == answer["id"]
            ],
            what="the reply in alice's open tab",
        )
        assert live[0]["message"]["reply_to"]["sender"] == "alice"

    # The quote is each side's own copy: an edit shows in it, and so does a deletion.
    status, _ = alice.call(
        "PATCH",
        f"/api/v1/conversations/bob/messages/{question['id']}",
        {"body": "Can you send the NDA by Monday?"},
    )
    assert status == 200
    eventually(
        lambda: arrived(bob, "alice", answer["id"])["reply_to"]["text"] == "Can you send the NDA by Monday?",
        what="the edit in bob's quote",
    )
    assert (
        alice.call("DELETE", f"/api/v1/conversations/bob/messages/{question['id']}?everyone=true")[0] == 204
    )
    quote = eventually(
        lambda: (q := arrived(bob, "alice", answer["id"])["reply_to"])["deleted"] and q,
        what="the deletion in bob's quote",
    )
    assert quote["text"] == ""


def test_a_reply_to_a_message_not_in_the_conversation_is_refused(alice: ApiSession, bob: ApiSession) -> None:
    elsewhere = alice.send("carol", "For carol only")
    status, body = reply(alice, "bob", "See above", elsewhere["id"])
    assert (status, body["error"]["code"], body["error"]["field"]) == (404, "not_found", "reply_to")
    status, body = reply(alice, "bob", "See above", new_id())
    assert (status, body["error"]["field"]) == (404, "reply_to")
    status, body = reply(alice, "bob", "See above", "not-an-id")
    assert (status, body["error"]["code"]) == (422, "invalid_request")


def test_a_quoted_message_deleted_for_oneself_leaves_the_reply_without_its_quote(
    alice: ApiSession, bob: ApiSession
) -> None:
    first = bob.send("alice", "Draft figures attached earlier")
    arrived(alice, "bob", first["id"])
    status, answer = reply(alice, "bob", "Thanks, reviewing", first["id"])
    assert status == 201
    assert alice.call("DELETE", f"/api/v1/conversations/bob/messages/{first['id']}")[0] == 204
    mine = arrived(alice, "bob", answer["id"])
    assert mine["reply_to"] == {"id": first["id"], "sender": None, "text": "", "deleted": True}
    theirs = arrived(bob, "alice", answer["id"])
    assert theirs["reply_to"]["text"] == "Draft figures attached earlier"  # bob still has his


def test_no_server_errors(net: DevNetwork) -> None:
    assert server_errors(net) == []
