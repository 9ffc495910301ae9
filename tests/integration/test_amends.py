"""Editing and deleting messages on real nodes: an edit or a deletion for everyone
reaches the recipient's copy and their search (sealed ``amend`` envelopes), only
a message's sender can amend it, an amend that comes before its message is
applied when the message comes, an older amend never undoes a newer one, and a
message still waiting for someone's first sign-in changes where it waits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from flamechat.devnet import DevNetwork
from flamechat.protocol.ids import new_id
from tests.integration.conftest import network_with_erin
from tests.integration.files_support import blob_files, download, send_file, wait_file_state
from tests.integration.peer import FakePeer
from tests.support import ApiSession, EventStream, data_dir, eventually, login, server_errors

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = network_with_erin(tmp_path_factory.mktemp("amends"))
    try:
        yield network
    finally:
        network.stop()


def edit(session: ApiSession, peer: str, message_id: str, text: str) -> tuple[int, dict[str, Any]]:
    return session.call("PATCH", f"/api/v1/conversations/{peer}/messages/{message_id}", {"body": text})


def delete(session: ApiSession, peer: str, message_id: str, *, everyone: bool) -> tuple[int, dict[str, Any]]:
    query = "?everyone=true" if everyone else ""
    return session.call("DELETE", f"/api/v1/conversations/{peer}/messages/{message_id}{query}")


def copy(session: ApiSession, peer: str, message_id: str) -> dict[str, Any] | None:
    return next((m for m in session.history(peer) if m["id"] == message_id), None)


def copy_becomes(session: ApiSession, peer: str, message_id: str, **expected: Any) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = copy(session, peer, message_id)
        return found if found is not None and all(found[k] == v for k, v in expected.items()) else None

    found: dict[str, Any] = eventually(check, timeout=30, what=f"{session.username}'s copy with {expected}")
    return found


def found_by_search(session: ApiSession, words: str) -> list[str]:
    status, body = session.call("GET", "/api/v1/search?" + urlencode({"q": words}))
    assert status == 200, body
    return [hit["message"]["id"] for hit in body["messages"]]


def test_an_edit_reaches_the_recipients_copy_live_and_their_search(
    alice: ApiSession, bob: ApiSession
) -> None:
    sent = alice.send("bob", "Board meets at ten in room Albatross")
    copy_becomes(bob, "alice", sent["id"], body="Board meets at ten in room Albatross")
    with EventStream(bob) as bob_tab:
        status, edited = edit(alice, "bob", sent["id"], "Board meets at eleven in room Bittern")
        assert status == 200, edited
        assert edited["body"] == "Board meets at eleven in room Bittern"
        assert edited["edited_at"] is not None
        assert "<p>" in edited["html"]

        seen = copy_becomes(bob, "alice", sent["id"], body="Board meets at eleven in room Bittern")
        assert seen["edited_at"] == edited["edited_at"]
        changed = eventually(
            lambda: [e for e in bob_tab.received() if e.get("type") == "message_changed"],
            what="the change in bob's open tab",
        )
        assert changed[-1]["message"]["body"] == "Board meets at eleven in room Bittern"
        assert "Bittern" in changed[-1]["message"]["html"]
    assert found_by_search(bob, "Bittern") == [sent["id"]]
    assert found_by_search(bob, "Albatross") == []
    assert found_by_search(alice, "Albatross") == []
    assert copy(alice, "bob", sent["id"])["body"] == "Board meets at eleven in room Bittern"  # type: ignore[index]


def test_deleting_for_everyone_empties_both_copies_and_the_search(alice: ApiSession, bob: ApiSession) -> None:
    sent = alice.send("bob", "The acquisition price is 41 million")
    copy_becomes(bob, "alice", sent["id"], body="The acquisition price is 41 million")
    unread = bob.listed("alice")["unread"]
    status, _ = delete(alice, "bob", sent["id"], everyone=True)
    assert status == 204

    mine = copy(alice, "bob", sent["id"])
    assert mine is not None
    assert (mine["deleted"], mine["body"]) == (True, "")
    theirs = copy_becomes(bob, "alice", sent["id"], deleted=True)
    assert theirs["body"] == ""
    assert found_by_search(bob, "acquisition") == []
    assert bob.listed("alice")["unread"] == unread - 1  # a deleted message waits for no one's eyes

    status, body = edit(alice, "bob", sent["id"], "The acquisition price is 40 million")
    assert (status, body["error"]["code"]) == (409, "message_not_amendable")
    assert delete(alice, "bob", sent["id"], everyone=True)[0] == 204  # once more: nothing new


def test_a_file_deleted_for_everyone_can_no_longer_be_opened_on_either_side(
    alice: ApiSession, bob: ApiSession
) -> None:
    disks = [Path(data_dir(session.node)) for session in (alice, bob)]
    before = [set(blob_files(disk)) for disk in disks]
    sent = send_file(alice, "bob", b"board minutes, draft 3\n" * 100, name="minutes.txt", mime="text/plain")
    wait_file_state(bob, "alice", sent["id"])
    assert download(bob, sent["id"])[0] == 200
    blobs = [set(blob_files(disk)) - old for disk, old in zip(disks, before, strict=True)]
    assert [len(new) for new in blobs] == [1, 1]  # alice's upload, bob's fetched copy
    status, body = edit(alice, "bob", sent["id"], "minutes-final.txt")
    assert (status, body["error"]["code"]) == (409, "message_not_amendable")  # files are not edited

    assert delete(alice, "bob", sent["id"], everyone=True)[0] == 204
    theirs = copy_becomes(bob, "alice", sent["id"], deleted=True)
    assert "file" not in theirs or theirs["file"] is None
    assert download(bob, sent["id"])[0] == 404  # its key went with it
    assert download(alice, sent["id"])[0] == 404
    assert found_by_search(bob, "minutes") == []
    eventually(  # nothing needs the ciphertext any more, on either node: it is gone from disk
        lambda: not any(path.exists() for new in blobs for path in new),
        what="both copies of the blob removed",
    )


def test_only_the_sender_amends_for_everyone_and_anyone_deletes_for_themselves(
    alice: ApiSession, bob: ApiSession
) -> None:
    sent = alice.send("bob", "Draft for your eyes only")
    copy_becomes(bob, "alice", sent["id"], body="Draft for your eyes only")

    status, body = edit(bob, "alice", sent["id"], "Draft approved")
    assert (status, body["error"]["code"]) == (409, "message_not_amendable")
    status, body = delete(bob, "alice", sent["id"], everyone=True)
    assert (status, body["error"]["code"]) == (409, "message_not_amendable")

    assert delete(bob, "alice", sent["id"], everyone=False)[0] == 204
    assert copy(bob, "alice", sent["id"]) is None
    assert copy(alice, "bob", sent["id"])["body"] == "Draft for your eyes only"  # type: ignore[index]

    for status, body in (
        edit(alice, "bob", new_id(), "no such message"),
        delete(alice, "bob", new_id(), everyone=True),
        delete(alice, "carol", sent["id"], everyone=False),  # not in that conversation
    ):
        assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = edit(alice, "bob", sent["id"], "   ")
    assert (status, body["error"]["field"]) == (422, "body")


def test_an_amend_from_anyone_but_the_sender_changes_nothing(
    alice: ApiSession, bob: ApiSession, erin: FakePeer
) -> None:
    sent = alice.send("bob", "Wire the deposit on Friday")
    copy_becomes(bob, "alice", sent["id"], body="Wire the deposit on Friday")
    forged = erin.seal(
        "erin", "bob", "", kind="amend", body={"message_id": sent["id"], "text": "Wire it to my account"}
    )
    assert erin.deliver(bob.node.url, forged).status == 200  # stored, as far as erin can tell
    erased = erin.seal("erin", "bob", "", kind="amend", body={"message_id": sent["id"], "deleted": True})
    assert erin.deliver(bob.node.url, erased).status == 200
    time.sleep(0.5)
    assert copy(bob, "alice", sent["id"])["body"] == "Wire the deposit on Friday"  # type: ignore[index]


def test_an_amend_that_comes_first_is_applied_when_its_message_comes_and_order_is_kept(
    bob: ApiSession, erin: FakePeer
) -> None:
    message_id = new_id()
    at = int(time.time() * 1000)
    newer = erin.seal(
        "erin", "bob", "", kind="amend", sent_at=at + 2, body={"message_id": message_id, "text": "v3"}
    )
    older = erin.seal(
        "erin", "bob", "", kind="amend", sent_at=at + 1, body={"message_id": message_id, "text": "v2"}
    )
    original = erin.seal("erin", "bob", "v1", message_id, sent_at=at)
    for wire in (newer, older, original):  # the roads crossed: amends first, the older one last
        assert erin.deliver(bob.node.url, wire).status == 200
    seen = copy_becomes(bob, "erin", message_id, body="v3")
    assert seen["edited_at"] == at + 2

    late = erin.seal(
        "erin", "bob", "", kind="amend", sent_at=at + 1, body={"message_id": message_id, "text": "v2"}
    )
    assert erin.deliver(bob.node.url, late).status == 200
    deleted = erin.seal(
        "erin", "bob", "", kind="amend", sent_at=at + 3, body={"message_id": message_id, "deleted": True}
    )
    assert erin.deliver(bob.node.url, deleted).status == 200
    copy_becomes(bob, "erin", message_id, deleted=True, body="")
    revived = erin.seal(
        "erin", "bob", "", kind="amend", sent_at=at + 4, body={"message_id": message_id, "text": "v5"}
    )
    assert erin.deliver(bob.node.url, revived).status == 200
    time.sleep(0.5)
    assert copy(bob, "erin", message_id)["deleted"]  # type: ignore[index]  # a deletion is final


def test_a_message_deleted_for_oneself_stays_out_when_a_late_copy_comes(
    bob: ApiSession, erin: FakePeer
) -> None:
    """A retry or a relay may bring a message again after it was stored: one its
    recipient deleted for themselves must not come back."""
    wire = erin.seal("erin", "bob", "Sensitive: the layoff list")
    assert erin.deliver(bob.node.url, wire).status == 200
    copy_becomes(bob, "erin", wire["id"], body="Sensitive: the layoff list")
    assert delete(bob, "erin", wire["id"], everyone=False)[0] == 204

    again = erin.deliver(bob.node.url, wire)  # the same envelope, by another road
    assert again.status == 200
    later = erin.seal("erin", "bob", "Unrelated and new")
    assert erin.deliver(bob.node.url, later).status == 200
    copy_becomes(bob, "erin", later["id"], body="Unrelated and new")
    assert copy(bob, "erin", wire["id"]) is None
    assert found_by_search(bob, "layoff") == []


def test_a_message_waiting_for_a_first_sign_in_changes_where_it_waits(
    net: DevNetwork, alice: ApiSession
) -> None:
    net.create_user("grace", "grace-password", "Grace Hopper")  # never signed in: no keys yet
    kept = alice.send("grace", "Welcome aboard, Grace")
    dropped = alice.send("grace", "Your laptop password is hunter2")
    assert [kept["state"], dropped["state"]] == ["waiting", "waiting"]
    assert edit(alice, "grace", kept["id"], "Welcome aboard, Grace! Lunch at noon?")[0] == 200
    assert delete(alice, "grace", dropped["id"], everyone=True)[0] == 204
    assert copy(alice, "grace", dropped["id"])["deleted"]  # type: ignore[index]
    body = {"body": "P.S. bring ID", "reply_to": kept["id"]}
    status, postscript = alice.call("POST", "/api/v1/conversations/grace/messages", body)
    assert (status, postscript["state"]) == (201, "waiting")
    assert edit(alice, "grace", postscript["id"], "P.S. bring a photo ID")[0] == 200  # a reply stays one

    grace = login(net.nodes[1], "grace", "grace-password")
    arrived = copy_becomes(grace, "alice", kept["id"], body="Welcome aboard, Grace! Lunch at noon?")
    assert arrived["edited_at"] is None  # sealed as it stood: it was never sent before
    answer = copy_becomes(grace, "alice", postscript["id"], body="P.S. bring a photo ID")
    assert answer["reply_to"]["id"] == kept["id"]
    time.sleep(1.0)
    ids = [m["id"] for m in grace.history("alice")]
    assert ids == [kept["id"], postscript["id"]]  # the deleted one never left


def test_no_server_errors(net: DevNetwork) -> None:
    assert server_errors(net) == []
