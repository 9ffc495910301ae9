"""A node trusts only what the directory's key signed (DirectoryView).

A real directory service answers in this process; the test alters its
answers on the way (a changed key in a signed record, a record signed by
someone else's key, a directory key served by an impostor). Every such
answer is refused as ``503 unavailable``, nothing of it is cached, and no
login or lookup goes through on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flamechat.crypto import KdfParams, NodeKey, b64encode, sign_document
from flamechat.protocol import errors
from flamechat.services.accounts import AccountService
from flamechat.services.directory import (
    LOGIN_PURPOSE,
    NODE_PURPOSE,
    NODES_PURPOSE,
    USER_PURPOSE,
    USERS_PURPOSE,
    DirectoryService,
)
from flamechat.services.directory_view import DIRECTORY_KEY_FACT, DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.passwords import make_hasher
from flamechat.storage import node_accounts, node_cache
from flamechat.storage.database import Database
from tests.unit import directory_support
from tests.unit.directory_support import DIRECTORY_KEY, NODE_KEY, InProcessDirectory
from tests.unit.support import FakeClock, node_key, user_keys

clock = directory_support.clock
directory_db_template = directory_support.directory_db_template
directory_service = directory_support.directory_service

IMPOSTOR = node_key("impostor")
OTHER = node_key("other")
MALLORY = user_keys("mallory")
PURPOSES = {"user": USER_PURPOSE, "users": USERS_PURPOSE, "node": NODE_PURPOSE, "nodes": NODES_PURPOSE}


def swap_keys(answer: dict[str, Any]) -> dict[str, Any]:
    """Mallory's keys in every user record and her address in every node record,
    the directory's signature left as it was."""
    records = [answer["user"]] if "user" in answer else answer.get("users", [])
    for record in records:
        record["sign_key"] = b64encode(MALLORY.public.sign)
        record["box_key"] = b64encode(MALLORY.public.box)
    for node in [answer["node"]] if "node" in answer else answer.get("nodes", []):
        node["url"] = "http://mallory.test"
    return answer


def signed_by(key: NodeKey) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The same answer with Mallory's keys, signed anew (under the right purpose) by ``key``."""

    def resign(answer: dict[str, Any]) -> dict[str, Any]:
        doc = {k: v for k, v in swap_keys(answer).items() if k != "signature"}
        purpose = LOGIN_PURPOSE if "node_id" in doc else next(p for f, p in PURPOSES.items() if f in doc)
        return {**doc, "signature": b64encode(sign_document(key, purpose, doc))}

    return resign


TAMPERINGS = {"altered after signing": swap_keys, "signed by another key": signed_by(IMPOSTOR)}


@pytest.fixture
def port(directory_service: Any) -> InProcessDirectory:
    return InProcessDirectory(directory_service, NODE_KEY.node_id)


def view_of(db: Database, port: InProcessDirectory, clock: FakeClock, pinned: bytes | None) -> DirectoryView:
    return DirectoryView(db, port, EventHub(), clock, pinned_key=pinned)


def accounts_on(view: DirectoryView, db: Database, keyring: KeyRing, clock: FakeClock) -> AccountService:
    return AccountService(
        db, view, keyring, make_hasher("minimal"), clock, node_id=NODE_KEY.node_id, kdf=KdfParams.minimal()
    )


async def nothing_cached(db: Database) -> bool:
    async with db.read() as conn:
        return (
            await node_cache.list_users(conn) == []
            and await node_cache.list_nodes(conn) == []
            and await node_accounts.get_account(conn, "alice") is None
        )


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
async def test_a_login_on_a_forged_directory_answer_is_refused_and_nothing_is_kept(
    node_db: Database, port: InProcessDirectory, clock: FakeClock, tampering: str
) -> None:
    port.tamper = TAMPERINGS[tampering]
    keyring = KeyRing()
    accounts = accounts_on(view_of(node_db, port, clock, DIRECTORY_KEY.public_key), node_db, keyring, clock)
    with pytest.raises(errors.ServiceUnavailable) as refused:
        await accounts.login("alice", "alice-password")
    assert refused.value.code == "unavailable"
    assert refused.value.status == 503
    assert keyring.get("alice") is None
    assert await nothing_cached(node_db)


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
async def test_forged_user_and_node_records_are_refused_and_never_cached(
    node_db: Database, port: InProcessDirectory, clock: FakeClock, tampering: str
) -> None:
    port.tamper = TAMPERINGS[tampering]
    view = view_of(node_db, port, clock, DIRECTORY_KEY.public_key)
    with pytest.raises(errors.ServiceUnavailable):
        await view.resolve("bob")
    with pytest.raises(errors.ServiceUnavailable):
        await view.refresh()
    with pytest.raises(errors.ServiceUnavailable):  # cannot tell: its requests are 503, retried
        await view.node(NODE_KEY.node_id)
    assert await view.relays(max_age=0) == []
    assert port.calls == ["get_user", "list_users", "get_node", "list_nodes"]  # each was asked, and refused
    assert await nothing_cached(node_db)
    # ... and a lookup served from the cache afterwards still has nothing to give
    port.tamper = lambda answer: answer
    clock.advance(10)
    assert (await view.resolve("bob")).box_key is None  # the genuine record: bob has not logged in yet


async def test_the_same_answers_unaltered_are_accepted_and_cached(
    node_db: Database, port: InProcessDirectory, clock: FakeClock
) -> None:
    """The control case: the refusals above are the signatures' doing."""
    keyring = KeyRing()
    accounts = accounts_on(view_of(node_db, port, clock, DIRECTORY_KEY.public_key), node_db, keyring, clock)
    await accounts.login("alice", "alice-password")
    assert keyring.get("alice") is not None
    async with node_db.read() as conn:
        cached = await node_cache.get_user(conn, "alice")
    assert cached is not None
    assert cached.box_key == keyring.require("alice").public.box


async def test_a_pinned_directory_key_is_not_replaced_by_what_the_directory_serves(
    node_db: Database, port: InProcessDirectory, clock: FakeClock
) -> None:
    """A node given --directory-key never asks for the key, and an impostor who
    serves its own key and signs with it is refused."""
    port.key_answer = {"public_key": b64encode(IMPOSTOR.public_key)}
    port.tamper = signed_by(IMPOSTOR)
    view = view_of(node_db, port, clock, DIRECTORY_KEY.public_key)
    with pytest.raises(errors.ServiceUnavailable):
        await view.resolve("bob")
    assert await view.directory_key() == DIRECTORY_KEY.public_key
    assert "fetch_key" not in port.calls
    assert await nothing_cached(node_db)


async def test_a_key_learned_on_first_contact_stays_pinned(
    node_db: Database, port: InProcessDirectory, clock: FakeClock
) -> None:
    """Trust on first use: the key fetched once is stored, and a directory (or an
    impostor in its place) serving another key later is not believed."""
    first = view_of(node_db, port, clock, None)
    assert await first.directory_key() == DIRECTORY_KEY.public_key
    async with node_db.read() as conn:
        assert await node_cache.get_fact(conn, DIRECTORY_KEY_FACT) == b64encode(DIRECTORY_KEY.public_key)

    port.key_answer = {"public_key": b64encode(IMPOSTOR.public_key)}
    port.tamper = signed_by(IMPOSTOR)
    restarted = view_of(node_db, port, clock, None)  # the node restarts: a fresh view, the same database
    with pytest.raises(errors.ServiceUnavailable):
        await restarted.resolve("bob")
    assert port.calls.count("fetch_key") == 1
    assert await nothing_cached(node_db)


# --- login approvals: genuine directory signatures, used where they do not belong ------------


async def replayed_login(
    node_db: Database, port: InProcessDirectory, clock: FakeClock, answer: dict[str, Any]
) -> tuple[AccountService, KeyRing]:
    """alice logs in while the network hands her node ``answer`` instead of the directory's."""
    port.forged = answer
    keyring = KeyRing()
    accounts = accounts_on(view_of(node_db, port, clock, DIRECTORY_KEY.public_key), node_db, keyring, clock)
    with pytest.raises(errors.ServiceUnavailable):
        await accounts.login("alice", "not-her-password")
    return accounts, keyring


async def test_a_user_record_does_not_pass_for_a_login_approval(
    node_db: Database, port: InProcessDirectory, clock: FakeClock, directory_service: DirectoryService
) -> None:
    """Anyone may fetch alice's signed record; handed over as the answer to a login with a wrong
    password, it would have let that login in (and, at her first login, set her password here)."""
    record = await directory_service.user("alice", asking_node=NODE_KEY.node_id)
    _accounts, keyring = await replayed_login(node_db, port, clock, record)
    assert keyring.get("alice") is None
    assert await nothing_cached(node_db)


async def test_an_approval_for_another_user_or_from_long_ago_is_refused(
    node_db: Database, port: InProcessDirectory, clock: FakeClock, directory_service: DirectoryService
) -> None:
    for_bob = await directory_service.check_login(NODE_KEY.node_id, "bob", "bob-password")
    earlier = await directory_service.check_login(NODE_KEY.node_id, "alice", "alice-password")
    _accounts, keyring = await replayed_login(node_db, port, clock, for_bob)
    assert keyring.get("alice") is None
    clock.advance(61)
    _accounts, keyring = await replayed_login(node_db, port, clock, earlier)
    assert keyring.get("alice") is None
    async with node_db.read() as conn:
        assert await node_accounts.get_account(conn, "alice") is None  # no password was set here

    port.forged = None  # the control case: a fresh approval for this node and user
    accounts = accounts_on(view_of(node_db, port, clock, DIRECTORY_KEY.public_key), node_db, KeyRing(), clock)
    assert (await accounts.login("alice", "alice-password")).session.username == "alice"


async def test_an_approval_given_to_another_node_is_refused(
    node_db: Database, port: InProcessDirectory, clock: FakeClock, directory_service: DirectoryService
) -> None:
    """alice lives on the other node: its approval, replayed here, does not make this node her home."""
    await directory_service.register_node(OTHER.node_id, "http://other.test", b64encode(OTHER.public_key))
    for_other_node = await directory_service.check_login(OTHER.node_id, "alice", "alice-password")
    _accounts, keyring = await replayed_login(node_db, port, clock, for_other_node)
    assert keyring.get("alice") is None
    assert await nothing_cached(node_db)
