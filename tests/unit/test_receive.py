"""Receiving envelopes (MessagingService.receive): the checks a node makes
before anything is stored, replays, blocks, and envelopes held while the
recipient is logged out. Real storage, a directory that is down (the cache
answers), a fake clock, no network."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from nacl.bindings import sodium_pad
from nacl.public import PublicKey, SealedBox

from flamechat.crypto import UserKeys, b64encode, seal_envelope
from flamechat.crypto import envelope as envelope_crypto
from flamechat.crypto.canonical import canonical_json
from flamechat.protocol import errors
from flamechat.services.blocks import BlockService
from flamechat.services.delivery import TRANSIENT_CODES
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub, Subscription
from flamechat.services.files import FileService
from flamechat.services.keyring import KeyRing
from flamechat.services.messaging import MessagingService
from flamechat.services.ratelimit import RateLimits, RateSettings
from flamechat.services.receiving import ReceivingService
from flamechat.storage import node_accounts, node_cache, node_files, node_messages
from flamechat.storage.blob_store import BlobStore
from flamechat.storage.database import Database
from flamechat.storage.records import KnownUser, LocalAccount
from tests.unit.support import DirectoryDown, FakeClock, user_keys

ME = "n" + "b" * 24  # bob's node: this one
ALICE_NODE = "n" + "a" * 24
RELAY_NODE = "n" + "r" * 24
ALICE, BOB, MALLORY = user_keys("alice"), user_keys("bob"), user_keys("mallory")


def envelope(
    n: int = 1,
    *,
    sender_keys: UserKeys = ALICE,
    box_key: bytes = BOB.public.box,
    kind: str = "message",
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return seal_envelope(
        sender_keys=sender_keys,
        sender="alice",
        recipient="bob",
        recipient_box_key=box_key,
        envelope_id=f"00000000-0000-7000-8000-{n:012d}",
        sent_at=1_800_000_000_000 + n,
        kind=kind,
        body={"text": f"hello {n}"} if body is None else body,
    ).to_wire()


@dataclass
class Node:
    db: Database
    keyring: KeyRing
    blocks: BlockService
    messaging: MessagingService
    receiving: ReceivingService
    tab: Subscription

    async def inbox(self) -> list[str]:
        records, _older, _newer = await self.messaging.history("bob", "alice")
        return [r.body for r in records]

    async def outbox(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            items = await node_messages.due(conn, 2**62, 100)
        return [json.loads(item.payload) for item in items]

    def events(self) -> list[dict[str, Any]]:
        """What bob's open tab was sent (bar the "directory is offline" banner)."""
        out = []
        while not self.tab.queue.empty():
            event = self.tab.queue.get_nowait()
            if event["type"] != "directory":
                out.append(event)
        return out


@pytest.fixture
async def node(node_db: Database) -> Node:
    clock = FakeClock()
    events = EventHub()
    directory = DirectoryView(node_db, DirectoryDown(), events, clock, pinned_key=b"\0" * 32)
    async with node_db.write() as conn:
        await node_cache.put_users(
            conn,
            [
                KnownUser(
                    "alice",
                    "Alice",
                    ALICE_NODE,
                    "http://a.test",
                    ALICE.public.sign,
                    ALICE.public.box,
                    True,
                    0,
                )
            ],
        )
        await node_accounts.put_account(
            conn, LocalAccount("bob", "$argon2id$x", b"wrapped", BOB.public.sign, BOB.public.box, True), 0
        )
    keyring = KeyRing()
    keyring.unlock("bob", BOB)
    blocks = BlockService(node_db, clock)
    messaging = MessagingService(
        node_db, directory, keyring, events, blocks, RateLimits(RateSettings(), clock), clock, node_id=ME
    )
    receiving = ReceivingService(node_db, directory, keyring, events, blocks, clock, outgoing=messaging)
    return Node(node_db, keyring, blocks, messaging, receiving, events.subscribe("bob"))


async def test_an_envelope_from_the_senders_home_node_is_stored_shown_and_acknowledged(node: Node) -> None:
    assert await node.receiving.receive(ALICE_NODE, envelope()) == "stored"
    assert await node.inbox() == ["hello 1"]
    assert [e["type"] for e in node.events()] == ["message"]
    (receipt,) = await node.outbox()  # a sealed delivery receipt goes back to alice
    assert (receipt["sender"], receipt["recipient"]) == ("bob", "alice")
    assert "delivered" not in json.dumps(receipt)  # its content is sealed, like any envelope


async def test_a_replayed_envelope_is_stored_once(node: Node) -> None:
    wire = envelope()
    assert await node.receiving.receive(ALICE_NODE, wire) == "stored"
    assert await node.receiving.receive(ALICE_NODE, wire) == "duplicate"
    assert await node.receiving.receive(RELAY_NODE, wire, relayed=True) == "duplicate"  # via a relay too
    assert await node.inbox() == ["hello 1"]
    assert len(await node.outbox()) == 1
    assert len(node.events()) == 1


async def test_envelopes_are_shown_in_the_senders_order(node: Node) -> None:
    for n in (3, 1, 2):  # arriving out of order (retries, relays)
        await node.receiving.receive(ALICE_NODE, envelope(n))
    assert await node.inbox() == ["hello 1", "hello 2", "hello 3"]


async def test_a_node_cannot_deliver_for_someone_it_does_not_host(node: Node) -> None:
    with pytest.raises(errors.Forbidden):
        await node.receiving.receive("n" + "m" * 24, envelope())
    assert await node.inbox() == []


class ConfirmingDirectory(DirectoryView):
    """The directory answers every question, and confirms the keys this node has cached."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, DirectoryDown(), EventHub(), FakeClock(), pinned_key=b"\0" * 32)
        self.answers = 0

    async def resolve(
        self, username: str, *, max_age: float | None = None, for_peer: str | None = None
    ) -> KnownUser:
        async with self.db.read() as conn:
            cached = await node_cache.get_user(conn, username)
        if cached is None:
            raise errors.UnknownUser(f"no user {username!r}")
        self.answers += 1
        return replace(cached, fetched_at=cached.fetched_at + self.answers)  # a new answer each time


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (envelope(sender_keys=MALLORY), errors.EnvelopeRejected),  # mallory signs as alice
        (envelope(box_key=MALLORY.public.box), errors.EnvelopeRejected),  # not sealed to bob's key
        ({**envelope(), "sent_at": 1}, errors.EnvelopeRejected),  # header altered after signing
        ({**envelope(), "ciphertext": b64encode(b"x" * 300)}, errors.EnvelopeRejected),
        ({**envelope(), "signature": "short"}, errors.InvalidRequest),
        ({"v": 1, "id": "x"}, errors.InvalidRequest),
        ({**envelope(), "recipient": "zed"}, errors.UnknownUser),
    ],
)
async def test_nothing_forged_or_malformed_is_stored(
    node: Node, wire: dict[str, Any], error: type[errors.FlameError]
) -> None:
    node.receiving.directory = ConfirmingDirectory(node.db)
    with pytest.raises(error):
        await node.receiving.receive(ALICE_NODE, wire)
    assert await node.inbox() == []
    assert await node.outbox() == []
    assert node.events() == []


async def test_a_forged_sender_is_refused_for_good_once_the_directory_confirms_the_keys(
    node: Node,
) -> None:
    node.receiving.directory = ConfirmingDirectory(node.db)
    with pytest.raises(errors.EnvelopeRejected):
        await node.receiving.receive(ALICE_NODE, envelope(sender_keys=MALLORY))
    assert await node.inbox() == []


async def test_keys_that_do_not_fit_during_an_outage_are_a_refusal_to_retry(node: Node) -> None:
    """Alice may have new keys the directory cannot confirm right now: her node is
    told to try again later (a transient code), not that her message is refused."""
    outcomes = await node.receiving.receive_batch(ALICE_NODE, [envelope(7, sender_keys=MALLORY)])
    assert outcomes[0].status == "refused"
    assert outcomes[0].error is not None
    assert outcomes[0].error.code == "directory_unavailable"
    assert outcomes[0].error.code in TRANSIENT_CODES
    assert await node.inbox() == []


async def test_a_blocked_senders_message_is_dropped_silently(node: Node) -> None:
    await node.blocks.block("bob", "alice")
    assert await node.receiving.receive(ALICE_NODE, envelope()) == "stored"  # alice is told nothing
    assert await node.inbox() == []
    assert await node.outbox() == []  # not even a delivery receipt
    assert node.events() == []


async def test_envelopes_wait_sealed_while_the_recipient_is_logged_out(node: Node) -> None:
    node.keyring.lock("bob")
    assert await node.receiving.receive(ALICE_NODE, envelope(1)) == "stored"
    assert await node.receiving.receive(ALICE_NODE, envelope(1)) == "duplicate"
    with pytest.raises(errors.DirectoryUnavailable):  # the signature is checked before holding
        await node.receiving.receive(ALICE_NODE, envelope(2, sender_keys=MALLORY))
    assert await node.inbox() == []  # nothing readable without bob's keys
    node.keyring.unlock("bob", BOB)
    assert await node.receiving.open_held("bob") == 1
    assert await node.inbox() == ["hello 1"]
    assert await node.receiving.open_held("bob") == 0


async def test_unknown_kinds_are_ignored_not_stored(node: Node) -> None:
    assert await node.receiving.receive(ALICE_NODE, envelope(kind="poll", body={"q": "?"})) == "duplicate"
    assert await node.inbox() == []


# --- operator blocks through relays, sizes, and every kind a block drops ---------------------


async def test_an_operator_blocked_nodes_users_are_dropped_when_their_envelopes_come_by_relay(
    node: Node,
) -> None:
    await node.blocks.admin_block("node", ALICE_NODE)
    # The relay itself is not blocked, and its request is admitted; alice's home is.
    assert await node.receiving.receive(RELAY_NODE, envelope(5), relayed=True) == "stored"
    assert await node.inbox() == []
    assert await node.outbox() == []  # no delivery receipt either
    assert node.events() == []
    await node.blocks.admin_unblock("node", ALICE_NODE)
    assert await node.receiving.receive(RELAY_NODE, envelope(6), relayed=True) == "stored"
    assert await node.inbox() == ["hello 6"]


async def test_an_envelope_held_before_its_node_was_blocked_is_not_opened_after(node: Node) -> None:
    node.keyring.lock("bob")
    assert await node.receiving.receive(RELAY_NODE, envelope(1), relayed=True) == "stored"
    await node.blocks.admin_block("node", ALICE_NODE)
    node.keyring.unlock("bob", BOB)
    assert await node.receiving.open_held("bob") == 0
    assert await node.inbox() == []
    assert await node.receiving.open_held("bob") == 0  # and it is gone, not kept for later


async def test_a_received_message_over_64_kib_is_refused_like_a_sent_one(node: Node) -> None:
    big = envelope(1, body={"text": "x" * (100 * 1024)})
    with pytest.raises(errors.MessageTooLarge) as refused:
        await node.receiving.receive(ALICE_NODE, big)
    assert refused.value.status == 413
    assert await node.inbox() == []
    assert await node.outbox() == []  # no receipt for what was refused
    # In a batch it refuses only itself; exactly 64 KiB is still a message.
    fits = envelope(2, body={"text": "y" * (64 * 1024)})
    outcomes = await node.receiving.receive_batch(
        ALICE_NODE, [envelope(3, body={"text": "x" * 70_000}), fits]
    )
    assert [o.status for o in outcomes] == ["refused", "stored"]
    assert outcomes[0].error is not None
    assert outcomes[0].error.code == "message_too_large"
    assert await node.inbox() == ["y" * (64 * 1024)]


async def test_an_oversized_message_held_while_logged_out_is_dropped_when_opened(node: Node) -> None:
    node.keyring.lock("bob")
    assert await node.receiving.receive(ALICE_NODE, envelope(1, body={"text": "x" * 70_000})) == "stored"
    assert await node.receiving.receive(ALICE_NODE, envelope(2)) == "stored"
    node.keyring.unlock("bob", BOB)
    assert await node.receiving.open_held("bob") == 1
    assert await node.inbox() == ["hello 2"]


def file_body(name: str = "plan.pdf") -> dict[str, Any]:
    return {
        "name": name,
        "size": 10,
        "sha256": "0" * 64,
        "blob": "1" * 64,
        "key": b64encode(b"k" * 32),
        "node": ALICE_NODE,
        "type": "application/pdf",
    }


@pytest.mark.parametrize("operator", [False, True])
async def test_a_blocked_senders_files_are_dropped_too(node: Node, tmp_path: Path, operator: bool) -> None:
    files = FileService(node.db, BlobStore(tmp_path), node.messaging, FakeClock(), node_id=ME)
    node.receiving.register_kind("file", files)
    assert await node.receiving.receive(ALICE_NODE, envelope(1, kind="file", body=file_body("a.pdf")))
    assert await node.inbox() == ["a.pdf"]  # files are stored when nobody blocks
    if operator:
        await node.blocks.admin_block("user", "alice")
    else:
        await node.blocks.block("bob", "alice")
    node.events()
    assert (
        await node.receiving.receive(ALICE_NODE, envelope(2, kind="file", body=file_body("b.pdf")))
        == "stored"
    )
    assert await node.inbox() == ["a.pdf"]
    async with node.db.read() as conn:
        assert await node_files.find_attachment(conn, "bob", envelope(2)["id"]) is None
    assert node.events() == []


@pytest.mark.parametrize("operator", [False, True])
async def test_a_blocked_senders_receipts_are_dropped_too(node: Node, operator: bool) -> None:
    async def bobs_message(n: int) -> str:
        message_id = f"00000000-0000-7000-9000-{n:012d}"
        async with node.db.write() as conn:
            await node_messages.add_message(
                conn,
                owner="bob",
                peer="alice",
                message_id=message_id,
                direction="out",
                sender="bob",
                recipient="alice",
                body=f"to alice {n}",
                sent_at=n,
                state="sent",
                now=n,
            )
        return message_id

    def receipt(n: int, message_id: str) -> dict[str, Any]:
        return envelope(n, kind="receipt", body={"status": "read", "message_ids": [message_id]})

    async def state(message_id: str) -> str:
        async with node.db.read() as conn:
            found = await node_messages.find_message(conn, "bob", message_id)
        assert found is not None
        return found.state

    first = await bobs_message(1)
    await node.receiving.receive(ALICE_NODE, receipt(1, first))
    assert await state(first) == "read"  # receipts count when nobody blocks
    second = await bobs_message(2)
    if operator:
        await node.blocks.admin_block("user", "alice")
    else:
        await node.blocks.block("bob", "alice")
    node.events()
    assert await node.receiving.receive(ALICE_NODE, receipt(2, second)) == "stored"
    assert await state(second) == "sent"  # alice's read mark never reaches bob
    assert node.events() == []


def hand_sealed(inner: bytes, header: dict[str, Any]) -> dict[str, Any]:
    """Seal content bytes as a dishonest node could write them (not via canonical JSON)."""
    signed = canonical_json(
        {"c": b64encode(inner), "s": b64encode(ALICE.sign(envelope_crypto._INNER_DOMAIN + inner))}
    )
    ciphertext = bytes(SealedBox(PublicKey(BOB.public.box)).encrypt(sodium_pad(signed, 256)))
    signature = ALICE.sign(envelope_crypto._outer_message(header, ciphertext))
    return {**header, "ciphertext": b64encode(ciphertext), "signature": b64encode(signature)}


async def test_content_that_is_not_utf8_is_refused_not_a_server_error(node: Node) -> None:
    header = {"v": 1, "id": "00000000-0000-7000-8000-000000000009", "sender": "alice", "recipient": "bob"}
    header["sent_at"] = 5
    content = {**header, "kind": "message", "body": {"text": "a\ud800b"}}  # a lone surrogate
    wire = hand_sealed(json.dumps(content).encode(), header)  # escaped as \ud800: valid JSON
    outcomes = await node.receiving.receive_batch(ALICE_NODE, [wire, envelope(1)])
    assert [o.status for o in outcomes] == ["refused", "stored"]  # the rest of the batch is kept
    assert outcomes[0].error is not None
    assert outcomes[0].error.code == "envelope_rejected"
    assert await node.inbox() == ["hello 1"]


async def test_one_sender_is_held_to_a_few_times_what_a_node_lets_them_send(node: Node) -> None:
    """A hostile node ignores its own limits: one of its users filled this node's
    disk at 10 MB/s, stored in the recipient's history or inbox."""
    node.receiving.limits = RateLimits(RateSettings(messages_per_minute=2), FakeClock())  # 10 a minute arrive
    outcomes = await node.receiving.receive_batch(ALICE_NODE, [envelope(n) for n in range(1, 16)])
    assert [o.status for o in outcomes] == ["stored"] * 10 + ["refused"] * 5
    refused = outcomes[-1].error
    assert refused is not None
    assert refused.code == "rate_limited"
    assert refused.code in TRANSIENT_CODES  # a genuine sender's backlog waits, it is not lost
    assert len(await node.inbox()) == 10
    # What this node collects from a relay is not held to it (relays bound it already).
    assert await node.receiving.receive(RELAY_NODE, envelope(16), relayed=True) == "stored"


async def test_one_sender_is_held_to_bytes_as_well(node: Node) -> None:
    node.receiving.limits = RateLimits(RateSettings(bytes_per_minute=20_000), FakeClock())  # 200 kB arrive
    big = [envelope(n, body={"text": "x" * 60_000}) for n in range(1, 6)]
    outcomes = await node.receiving.receive_batch(ALICE_NODE, big)
    assert [o.status for o in outcomes][:2] == ["stored", "stored"]
    assert "refused" in [o.status for o in outcomes]
