"""What a received ``amend`` envelope or reply may say (``parse_amend``,
``reply_target``): anything a sending node could not have produced is dropped,
never applied; the early-amend lookup; and what a reply's quote shows."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamechat.crypto import OpenedEnvelope
from flamechat.protocol import errors
from flamechat.protocol.ids import new_id
from flamechat.services.amends import AmendService, parse_amend
from flamechat.services.events import EventHub
from flamechat.services.messaging import MAX_BODY_BYTES, QUOTE_CHARS, quote_view
from flamechat.services.receiving import reply_target
from flamechat.storage import node_amends, node_messages
from flamechat.storage.database import Database
from flamechat.storage.records import MessageRecord
from tests.unit.support import PROPERTY, FakeClock

ID = "0190c1de-7a00-7000-8000-000000000001"


@pytest.mark.parametrize(
    ("body", "parsed"),
    [
        ({"message_id": ID, "text": "new words"}, (ID, "new words")),
        ({"message_id": ID, "deleted": True}, (ID, None)),
        ({"message_id": ID, "deleted": True, "text": "ignored"}, (ID, None)),  # a deletion wins
        ({"message_id": ID, "deleted": "yes"}, (None, None)),
        ({"message_id": ID}, (None, None)),
        ({"message_id": ID, "text": "   "}, (None, None)),
        ({"message_id": ID, "text": "x" * (MAX_BODY_BYTES + 1)}, (None, None)),
        ({"message_id": "", "text": "x"}, (None, None)),
        ({"message_id": "x" * 37, "text": "x"}, (None, None)),
        ({"message_id": 7, "text": "x"}, (None, None)),
        ({"text": "x"}, (None, None)),
    ],
)
def test_only_a_well_formed_amend_is_taken(
    body: dict[str, Any], parsed: tuple[str | None, str | None]
) -> None:
    assert parse_amend(body) == parsed


@PROPERTY
@given(
    st.dictionaries(st.text(max_size=12), st.none() | st.booleans() | st.integers() | st.text(max_size=40))
)
def test_any_body_is_either_refused_or_names_a_bounded_message(body: dict[str, Any]) -> None:
    target, text = parse_amend(body)
    if target is None:
        assert text is None
    else:
        assert 0 < len(target) <= 36
        assert text is None or text.strip()


# --- the lookup every received message makes, skipped while no early amend is kept ----


def opened_amend(message_id: str, text: str, at: int) -> OpenedEnvelope:
    body = {"message_id": message_id, "text": text}
    return OpenedEnvelope(id=new_id(), kind="amend", sender="erin", recipient="bob", sent_at=at, body=body)


async def receive_message(
    db: Database, amends: AmendService, message_id: str, text: str
) -> MessageRecord | None:
    async with db.write() as conn:
        record = await node_messages.add_message(
            conn,
            owner="bob",
            peer="erin",
            message_id=message_id,
            direction="in",
            sender="erin",
            recipient="bob",
            body=text,
            sent_at=1,
            state="delivered",
            now=1,
        )
        assert record is not None
        return await amends.arrived(conn, record)


async def test_early_amends_are_looked_up_only_while_some_are_kept(
    node_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    amends = AmendService(node_db, cast(Any, None), cast(Any, None), EventHub(clock), clock, keep_for=60.0)
    lookups = 0
    take_early = node_amends.take_early

    async def counted(*args: Any) -> Any:
        nonlocal lookups
        lookups += 1
        return await take_early(*args)

    monkeypatch.setattr(node_amends, "take_early", counted)
    first = await receive_message(node_db, amends, new_id(), "before any count")
    assert first is not None
    assert lookups == 1  # not counted yet: looked up

    await amends.forget_early()  # at start: none kept
    await receive_message(node_db, amends, new_id(), "plain")
    assert lookups == 1  # none kept: no lookup

    later = new_id()
    async with node_db.write() as conn:
        assert await amends.received(conn, opened_amend(later, "edited before it came", 5), 5) == []
    arrived = await receive_message(node_db, amends, later, "as first written")
    assert arrived is not None
    assert (arrived.body, arrived.edited_at) == ("edited before it came", 5)

    clock.advance(61.0)
    await amends.forget_early()  # used up, and the count follows
    await receive_message(node_db, amends, new_id(), "plain again")
    assert lookups == 2


# --- replies: what a received reply may name, and what a quote shows ------------------


@pytest.mark.parametrize(
    ("body", "kind", "target"),
    [
        ({"text": "yes", "reply_to": ID}, "message", ID),
        ({"text": "yes"}, "message", None),
        ({"text": "yes", "reply_to": ""}, "message", None),
        ({"text": "yes", "reply_to": "x" * 37}, "message", None),
        ({"text": "yes", "reply_to": ["a"]}, "message", None),
        ({"reply_to": ID}, "file", None),
    ],
)
def test_a_reply_names_its_message_only_as_a_sending_node_would(
    body: dict[str, Any], kind: str, target: str | None
) -> None:
    opened = OpenedEnvelope(id=new_id(), kind=kind, sender="erin", recipient="bob", sent_at=1, body=body)
    assert reply_target(opened) == target


def quoted(**changes: Any) -> MessageRecord:
    record = MessageRecord(1, "bob", "erin", ID, "in", "erin", "bob", "Which room?", 1, "read", None)
    return replace(record, **changes)


def test_a_quote_shows_this_sides_copy_as_it_is_now() -> None:
    assert quote_view(ID, quoted(), "erin") == {
        "id": ID,
        "sender": "erin",
        "text": "Which room?",
        "deleted": False,
    }
    assert quote_view(ID, quoted(body="x" * 500), "erin")["text"] == "x" * QUOTE_CHARS
    gone = {"id": ID, "sender": "erin", "text": "", "deleted": True}
    assert quote_view(ID, quoted(body="", deleted_at=5), "erin") == gone
    missing = {"id": ID, "sender": None, "text": "", "deleted": True}
    assert quote_view(ID, None, "erin") == missing
    assert quote_view(ID, quoted(peer="carol"), "erin") == missing  # another conversation's


# --- deleting a failed message for everyone ---------------------------------------------


class FakeMessaging:
    """What deleting for everyone asks of messaging: a seal (or a refusal), and the outbox."""

    def __init__(self, refusal: Exception | None = None) -> None:
        self.refusal = refusal
        self.queued: list[str] = []
        self.waiting = SimpleNamespace(lock=asyncio.Lock())

    async def seal_control(
        self, username: str, peer: str, kind: str, body: dict[str, Any]
    ) -> tuple[Any, int]:
        if self.refusal is not None:
            raise self.refusal
        return SimpleNamespace(id=new_id(), kind=kind, body=body), 7

    async def enqueue(self, conn: Any, envelope: Any, now: int) -> None:
        self.queued.append(envelope.body["message_id"])

    def wake(self) -> None:
        pass


class NoFiles:
    async def forget(self, conn: Any, owner: str, message_id: str, *, revoke_from: str | None = None) -> None:
        return None


async def failed_message(db: Database) -> str:
    message_id = new_id()
    async with db.write() as conn:
        await node_messages.add_outgoing(
            conn, owner="alice", peer="bob", message_id=message_id, body="Figures: 41M", sent_at=1,
            state="failed", kind="text",
        )  # fmt: skip
    return message_id


@pytest.mark.parametrize("bob_can_be_told", [True, False])
async def test_a_failed_message_deleted_for_everyone_is_told_while_its_recipient_can_be(
    node_db: Database, bob_can_be_told: bool
) -> None:
    """It may have reached a relay before it failed: the deletion goes too, unless
    there is nobody to seal it to (then it is deleted here alone)."""
    messaging = FakeMessaging(None if bob_can_be_told else errors.RecipientNotReady("bob has no keys"))
    clock = FakeClock()
    amends = AmendService(
        node_db, cast(Any, messaging), cast(Any, NoFiles()), EventHub(clock), clock, keep_for=60
    )
    message_id = await failed_message(node_db)
    deleted = await amends.delete_for_everyone("alice", "bob", message_id)
    assert deleted.deleted_at is not None
    assert deleted.body == ""
    assert messaging.queued == ([message_id] if bob_can_be_told else [])
