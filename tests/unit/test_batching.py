"""Batches end to end without a network: group commit, batch receive, and the
fallback to one PUT per envelope for a peer without the batch feature."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flamechat.crypto import open_envelope
from flamechat.crypto.envelope import SealedEnvelope
from flamechat.federation.client import HttpPeers
from flamechat.services.ports import TransportError
from flamechat.storage import node_messages
from flamechat.storage.database import Database
from tests.unit.support import FakeClock

# ``node``: the receiving node of test_receive.py, a fixture used here by name.
from tests.unit.test_receive import ALICE, ALICE_NODE, BOB, ConfirmingDirectory, Node, envelope, node  # noqa: F401

# --- group commit ---------------------------------------------------------------------


async def _write(db: Database, n: int, *, fail: bool = False) -> None:
    async with db.write() as conn:
        await node_messages.add_message(
            conn,
            owner="alice",
            peer="bob",
            message_id=f"m{n}",
            direction="out",
            sender="alice",
            recipient="bob",
            body=f"hello {n}",
            sent_at=n,
            state="pending",
            now=n,
        )
        if fail:
            raise ValueError("this writer's block fails")


async def _stored(db: Database, n: int) -> bool:
    async with db.read() as conn:
        return await node_messages.find_message(conn, "alice", f"m{n}") is not None


async def test_writers_that_queue_together_share_one_commit(node_db: Database) -> None:
    before = node_db.commits
    await asyncio.gather(*(_write(node_db, n) for n in range(20)))
    assert node_db.commits - before < 20  # grouped (one or two commits, not twenty)
    assert all([await _stored(node_db, n) for n in range(20)])


async def test_a_failing_writer_rolls_back_only_its_own_block(node_db: Database) -> None:
    results = await asyncio.gather(
        _write(node_db, 1), _write(node_db, 2, fail=True), _write(node_db, 3), return_exceptions=True
    )
    assert results[0] is None
    assert isinstance(results[1], ValueError)
    assert results[2] is None
    assert [await _stored(node_db, n) for n in (1, 2, 3)] == [True, False, True]


async def test_a_writer_returns_only_once_its_block_is_committed(node_db: Database) -> None:
    await _write(node_db, 7)
    # Another connection (another process, as far as SQLite knows) sees it at once.
    assert await _stored(node_db, 7)


# --- receiving a batch ----------------------------------------------------------------


async def test_a_batch_is_stored_with_one_receipt_and_per_envelope_outcomes(node: Node) -> None:  # noqa: F811
    node.receiving.directory = ConfirmingDirectory(node.db)  # it can tell a forgery from new keys
    forged = envelope(3)
    forged["signature"] = envelope(4)["signature"]  # not alice's signature over this one
    batch = [envelope(1), envelope(2), forged, envelope(1)]
    outcomes = await node.receiving.receive_batch(ALICE_NODE, batch)
    assert [o.status for o in outcomes] == ["stored", "stored", "refused", "duplicate"]
    assert outcomes[2].error is not None
    assert outcomes[2].error.code == "envelope_rejected"
    assert await node.inbox() == ["hello 1", "hello 2"]
    (receipt,) = await node.outbox()  # one receipt vouches for the whole batch
    opened = open_envelope(
        SealedEnvelope.from_wire(receipt), recipient_keys=ALICE, sender_sign_key=BOB.public.sign
    )
    assert opened.kind == "receipt"
    assert opened.body == {
        "status": "delivered",
        "message_ids": [envelope(1)["id"], envelope(2)["id"]],
    }


# --- the version/feature fallback -------------------------------------------------------


class FakeClient:
    """SignedClient's call(), answering a peer's /version and deliveries on cue."""

    def __init__(self, version: dict[str, Any] | None, *, down_after: int | None = None) -> None:
        self.clock = FakeClock()
        self.version = version
        self.down_after = down_after
        self.calls: list[tuple[str, str]] = []

    async def call(
        self, method: str, url: str, body: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        path = url.split("/federation/v1", 1)[1]
        self.calls.append((method, path))
        if path == "/version":
            if self.version is None:
                raise TransportError("404", transient=False, status=404, code="not_found")
            return self.version
        if method == "POST":
            assert body is not None
            return {"results": [{"id": e["id"], "status": "stored"} for e in body["envelopes"]]}
        puts = sum(1 for m, _ in self.calls if m == "PUT")
        if self.down_after is not None and puts > self.down_after:
            raise TransportError("connection refused", transient=True)
        assert body is not None
        return {"id": body["id"], "status": "stored"}


ENVELOPES = [{"id": f"e{i}"} for i in range(3)]


async def test_a_peer_that_lists_the_batch_feature_gets_one_request() -> None:
    client = FakeClient({"versions": ["1"], "features": ["envelopes", "envelope-batch"]})
    results = await HttpPeers(client).deliver_batch("http://b.test", ENVELOPES)  # type: ignore[arg-type]
    assert [r["status"] for r in results] == ["stored"] * 3
    assert client.calls == [("GET", "/version"), ("POST", "/envelopes")]


@pytest.mark.parametrize(
    "version", [{"versions": ["1"], "features": ["envelopes"]}, None], ids=["no-feature", "no-version"]
)
async def test_an_older_peer_gets_one_put_per_envelope_in_order(version: dict[str, Any] | None) -> None:
    client = FakeClient(version)
    peers = HttpPeers(client)  # type: ignore[arg-type]
    results = await peers.deliver_batch("http://b.test", ENVELOPES)
    assert [r["status"] for r in results] == ["stored"] * 3
    assert client.calls[1:] == [("PUT", "/envelopes/e0"), ("PUT", "/envelopes/e1"), ("PUT", "/envelopes/e2")]
    await peers.deliver_batch("http://b.test", ENVELOPES)
    assert [c for c in client.calls if c[1] == "/version"] == [("GET", "/version")]  # asked once


async def test_an_outage_midway_leaves_the_rest_for_a_retry() -> None:
    client = FakeClient({"versions": ["1"], "features": []}, down_after=1)
    results = await HttpPeers(client).deliver_batch("http://b.test", ENVELOPES)  # type: ignore[arg-type]
    assert results[0]["status"] == "stored"
    assert [r["error"]["code"] for r in results[1:]] == ["peer_unavailable", "peer_unavailable"]


async def test_a_peer_with_no_version_in_common_is_refused_not_retried() -> None:
    client = FakeClient({"versions": ["7"], "features": ["envelope-batch"]})
    with pytest.raises(TransportError) as refused:
        await HttpPeers(client).deliver_batch("http://b.test", ENVELOPES)  # type: ignore[arg-type]
    assert refused.value.transient is False
    assert refused.value.code == "no_common_version"
