"""Small pure rules inside the services: cursors, receipt ids, relay choice,
what a viewer may see of someone's presence, the key ring, passwords, time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamechat.protocol import errors
from flamechat.services.clock import SystemClock, ms
from flamechat.services.directory_view import shown_presence
from flamechat.services.keyring import KeyRing
from flamechat.services.messaging import decode_cursor, encode_cursor, message_view, receipt_id
from flamechat.services.passwords import make_hasher, verify_password
from flamechat.services.relay import rendezvous_order
from flamechat.storage.records import KnownNode, KnownUser, MessageRecord
from tests.unit.support import PROPERTY, FakeClock, user_keys


def record(sent_at: int = 1_800_000_000_000, seq: int = 7) -> MessageRecord:
    return MessageRecord(
        seq=seq,
        owner="alice",
        peer="bob",
        id="0190a5e4-8c1b-7a3e-9f00-123456789abc",
        direction="out",
        sender="alice",
        recipient="bob",
        body="hi <b>",
        sent_at=sent_at,
        state="sent",
        error=None,
    )


# --- history cursors -----------------------------------------------------------------------------


@PROPERTY
@given(sent_at=st.integers(0, 2**53), seq=st.integers(0, 2**62))
def test_cursor_round_trip(sent_at: int, seq: int) -> None:
    assert decode_cursor(encode_cursor(record(sent_at, seq))) == (sent_at, seq)


def test_no_cursor_is_the_newest_page() -> None:
    assert decode_cursor(None) is None


@pytest.mark.parametrize(
    "bad", ["", ".", "1.", ".1", "a.b", "1.2.3", "-1.2", "1.-2", "².1", "1.٣", " 1.2", "1e3.2"]
)
def test_a_cursor_not_made_by_us_is_a_422_not_a_500(bad: str) -> None:
    with pytest.raises(errors.InvalidRequest) as refused:
        decode_cursor(bad)
    assert refused.value.status == 422


@PROPERTY
@given(text=st.text(max_size=30))
def test_any_cursor_text_decodes_or_is_refused_cleanly(text: str) -> None:
    try:
        sent_at, seq = decode_cursor(text) or (0, 0)
    except errors.InvalidRequest:
        return
    assert sent_at >= 0
    assert seq >= 0


def test_message_view_is_the_wire_shape() -> None:
    view = message_view(record())
    assert view["conversation"] == "bob"
    assert view["body"] == "hi <b>"  # raw: escaping is the page's job, rendering adds "html"
    assert set(view) >= {"id", "seq", "sender", "recipient", "sent_at", "state", "direction", "error"}


# --- receipts ----------------------------------------------------------------------------------


@PROPERTY
@given(ids=st.lists(st.uuids().map(str), min_size=1, max_size=10, unique=True), data=st.data())
def test_a_receipt_id_depends_on_content_not_order(ids: list[str], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(ids))
    assert receipt_id("read", "bob", ids) == receipt_id("read", "bob", list(shuffled))


def test_different_receipts_have_different_ids() -> None:
    ids = ["0190a5e4-8c1b-7a3e-9f00-123456789abc"]
    distinct = {
        receipt_id("read", "bob", ids),
        receipt_id("delivered", "bob", ids),
        receipt_id("read", "carol", ids),
        receipt_id("read", "bob", [*ids, "0190a5e4-8c1b-7a3e-9f00-000000000000"]),
    }
    assert len(distinct) == 4


# --- relay choice ------------------------------------------------------------------------------


def relays(count: int) -> list[KnownNode]:
    return [KnownNode(f"n{i:024d}", f"http://r{i}.test", bytes(32), relay=True) for i in range(count)]


@PROPERTY
@given(key=st.text(max_size=30), count=st.integers(1, 8), data=st.data())
def test_relay_order_is_a_stable_permutation(key: str, count: int, data: st.DataObject) -> None:
    nodes = relays(count)
    order = rendezvous_order(nodes, key)
    assert sorted(n.node_id for n in order) == sorted(n.node_id for n in nodes)
    shuffled = data.draw(st.permutations(nodes))
    assert rendezvous_order(list(shuffled), key) == order  # every node agrees, whatever order it listed them


def test_removing_one_relay_moves_only_the_keys_it_held() -> None:
    nodes = relays(5)
    keys = [f"bob{i}" for i in range(200)]
    before = {k: rendezvous_order(nodes, k)[0].node_id for k in keys}
    gone = nodes[2].node_id
    after = {k: rendezvous_order([n for n in nodes if n.node_id != gone], k)[0].node_id for k in keys}
    assert all(after[k] == before[k] for k in keys if before[k] != gone)
    assert len(set(before.values())) == 5  # spread over all relays


# --- presence a viewer may see -------------------------------------------------------------------


def user(**changes: object) -> KnownUser:
    base = KnownUser("alice", "Alice", "n" + "a" * 24, "http://a", None, None, True, 0, "busy", "in a call")
    return KnownUser(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def test_a_viewer_sees_status_and_text() -> None:
    assert shown_presence(user(), "bob") == {
        "username": "alice",
        "display_name": "Alice",
        "online": True,
        "status": "busy",
        "status_text": "in a call",
    }


def test_someone_alice_blocks_sees_her_offline_without_a_status_text() -> None:
    shown = shown_presence(user(hidden_from=("mallory",)), "mallory")
    assert shown["online"] is False
    assert shown["status"] == "offline"
    assert shown["status_text"] == ""
    assert shown_presence(user(hidden_from=("mallory",)), "bob")["online"] is True


def test_an_offline_user_shows_no_status_text() -> None:
    shown = shown_presence(user(online=False), "bob")
    assert (shown["status"], shown["status_text"]) == ("offline", "")


# --- key ring ------------------------------------------------------------------------------------


def test_keys_are_usable_only_while_unlocked() -> None:
    ring = KeyRing()
    with pytest.raises(errors.NotAuthenticated):
        ring.require("alice")
    keys = user_keys("alice")
    ring.unlock("alice", keys)
    assert ring.require("alice") is keys
    assert ring.unlocked() == {"alice"}
    ring.lock("alice")
    assert ring.get("alice") is None
    ring.lock("alice")  # locking twice is harmless
    assert ring.unlocked() == set()


# --- passwords and time ------------------------------------------------------------------------


def test_password_verifier_accepts_only_the_password() -> None:
    hasher = make_hasher("minimal")
    verifier = hasher.hash("correct horse")
    assert verifier.startswith("$argon2id$")
    assert verify_password(hasher, verifier, "correct horse")
    assert not verify_password(hasher, verifier, "correct horse ")
    assert not verify_password(hasher, "not a verifier", "correct horse")
    assert not verify_password(hasher, verifier.replace("$argon2id$", "$argon2i$"), "correct horse")


def test_the_real_profile_is_argon2id_with_real_cost() -> None:
    hasher = make_hasher()
    assert hasher.time_cost >= 2
    assert hasher.memory_cost >= 19 * 1024  # OWASP's floor for Argon2id, in KiB


def test_ms_is_milliseconds_of_the_given_clock() -> None:
    assert ms(FakeClock(1_800_000_000.1234)) == 1_800_000_000_123
    assert abs(SystemClock().now() - ms(SystemClock()) / 1000) < 5
