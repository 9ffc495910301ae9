"""Key continuity on real processes: when the directory starts serving other keys
for bob (here because his password was reset, which is also what a directory
substituting its own keys would look like), alice, who had written with bob,
is stopped and told until she confirms; carol, who never had, is not."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORDS
from tests.integration.conftest import NetworkFactory
from tests.support import EventStream, eventually, login, reset_password

pytestmark = pytest.mark.integration

NEW_PASSWORD = "bobs-brand-new-passphrase"


def test_a_changed_key_stops_those_who_wrote_before_until_they_confirm(
    network_factory: NetworkFactory,
) -> None:
    net = network_factory()
    node1, node2 = net.nodes
    bob = login(node2, "bob", PASSWORDS["bob"])
    alice = login(node1, "alice", PASSWORDS["alice"])
    carol = login(node1, "carol", PASSWORDS["carol"])
    first = alice.send("bob", "written under bob's first keys")
    assert alice.listed("bob")["keys_changed_at"] is None

    with EventStream(alice) as alice_tab:
        bob = reset_password(net, "bob", NEW_PASSWORD, node2)
        # alice's node learns bob's new keys from the directory's signed list.
        shown = eventually(lambda: (u := alice.listed("bob"))["keys_changed_at"] and u, what="change seen")
        assert isinstance(shown["keys_changed_at"], int)

        def told() -> bool:
            return any(
                e.get("type") == "keys_changed" and e.get("username") == "bob" for e in alice_tab.received()
            )

        eventually(told, what="alice's open tab told")

    status, body = alice.call("POST", "/api/v1/conversations/bob/messages", {"body": "sealed to whom?"})
    assert status == 409, body
    assert body["error"]["code"] == "keys_changed"
    assert body["error"]["details"]["username"] == "bob"
    # An edit is new text too: not sealed to unconfirmed keys either.
    edit = {"body": "edited: sealed to whom?"}
    status, body = alice.call("PATCH", f"/api/v1/conversations/bob/messages/{first['id']}", edit)
    assert (status, body["error"]["code"]) == (409, "keys_changed")

    # carol had never written with bob: his current keys are simply the ones she meets.
    assert carol.listed("bob")["keys_changed_at"] is None
    carol.send("bob", "hello from carol")

    status, body = alice.call("POST", "/api/v1/users/bob/keys/confirm", {})
    assert status == 200, body
    assert alice.listed("bob")["keys_changed_at"] is None
    alice.send("bob", "checked with you by phone")
    status, body = alice.call("POST", "/api/v1/users/bob/keys/confirm", {})
    assert (status, body["error"]["code"]) == (404, "not_found")

    def arrived() -> list[str] | None:
        texts = [m["body"] for m in bob.history("alice")]
        return texts if "checked with you by phone" in texts else None

    assert "sealed to whom?" not in eventually(arrived, what="alice's confirmed message at bob's")
    assert "hello from carol" in [m["body"] for m in bob.history("carol")]


def test_a_contact_verified_by_safety_number_stays_verified_only_while_their_keys_do(
    network_factory: NetworkFactory,
) -> None:
    net = network_factory()
    node1, node2 = net.nodes
    login(node2, "bob", PASSWORDS["bob"])
    alice = login(node1, "alice", PASSWORDS["alice"])
    alice.send("bob", "hello bob")

    def safety() -> str:
        status, body = alice.call("GET", "/api/v1/users/bob/safety-number")
        assert status == 200, body
        return str(body["safety_number"])

    first = safety()
    wrong = first[:-1] + ("1" if first[-1] != "1" else "2")
    status, body = alice.call("PUT", "/api/v1/users/bob/verified", {"safety_number": wrong})
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert alice.listed("bob")["verified"] is False
    status, body = alice.call("PUT", "/api/v1/users/bob/verified", {"safety_number": first})
    assert status == 200, body
    assert alice.listed("bob")["verified"] is True

    reset_password(net, "bob", NEW_PASSWORD, node2)
    shown = eventually(lambda: (u := alice.listed("bob"))["keys_changed_at"] and u, what="change seen")
    assert shown["verified"] is False  # what was verified is not what is held now
    second = safety()
    assert second != first
    status, body = alice.call("PUT", "/api/v1/users/bob/verified", {"safety_number": first})
    assert (status, body["error"]["code"]) == (409, "conflict")  # the old comparison proves nothing now

    status, body = alice.call("PUT", "/api/v1/users/bob/verified", {"safety_number": second})
    assert status == 200, body
    shown = alice.listed("bob")
    assert (shown["verified"], shown["keys_changed_at"]) == (True, None)  # verifying confirmed the change
    alice.send("bob", "verified, and writing again")

    status, body = alice.call("DELETE", "/api/v1/users/bob/verified")
    assert (status, body["verified"]) == (200, False)
    assert alice.listed("bob")["verified"] is False
