"""Logging in on a node (AccountService) against a real directory service in
this process: first logins that race each other, and keys that lock when a
user's last session ends. Real storage, a fake clock, no network."""

from __future__ import annotations

import asyncio

import pytest

from flamechat.crypto import KdfParams
from flamechat.protocol import errors
from flamechat.services.accounts import AccountService
from flamechat.services.directory import DirectoryService
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.passwords import make_hasher
from flamechat.storage import directory_store, node_accounts
from flamechat.storage.database import Database
from flamechat.storage.records import LocalAccount
from tests.unit import directory_support
from tests.unit.directory_support import DIRECTORY_KEY, NODE_KEY, InProcessDirectory
from tests.unit.support import FakeClock

SESSION_TTL = 3600.0

clock = directory_support.clock
directory_db_template = directory_support.directory_db_template
directory_service = directory_support.directory_service


@pytest.fixture
def port(directory_service: DirectoryService) -> InProcessDirectory:
    return InProcessDirectory(directory_service, NODE_KEY.node_id)


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing()


@pytest.fixture
def accounts(
    node_db: Database, port: InProcessDirectory, keyring: KeyRing, clock: FakeClock
) -> AccountService:
    view = DirectoryView(node_db, port, EventHub(), clock, pinned_key=DIRECTORY_KEY.public_key)
    return AccountService(
        node_db,
        view,
        keyring,
        make_hasher("minimal"),
        clock,
        node_id=NODE_KEY.node_id,
        kdf=KdfParams.minimal(),
        session_ttl=SESSION_TTL,
    )


async def test_first_logins_at_once_leave_one_set_of_keys_that_the_directory_serves(
    accounts: AccountService, directory_service: DirectoryService, keyring: KeyRing, node_db: Database
) -> None:
    results = await asyncio.gather(*(accounts.login("alice", "alice-password") for _ in range(6)))
    assert len({r.token for r in results}) == 6  # six sessions, each its own

    async with node_db.read() as conn:
        stored = await node_accounts.get_account(conn, "alice")
    async with directory_service.db.read() as conn:
        published = await directory_store.get_account(conn, "alice")
    assert stored is not None
    assert published is not None
    # what others seal to is what this node opens with, and what the user's sessions hold
    assert (published.sign_key, published.box_key) == (stored.sign_key, stored.box_key)
    unlocked = keyring.require("alice")
    assert (unlocked.public.sign, unlocked.public.box) == (stored.sign_key, stored.box_key)
    for result in results:  # every session unlocks those keys after a restart too
        keyring.lock("alice")
        await accounts.authenticate(result.token)
        assert keyring.require("alice").public.box == stored.box_key
    assert len(accounts._first_logins) == 0  # the per-user locks are gone once done


async def test_storing_an_account_never_overwrites_one_already_there(node_db: Database) -> None:
    first = LocalAccount("alice", "$argon2id$first", b"first-keys", b"s" * 32, b"b" * 32, False)
    second = LocalAccount("alice", "$argon2id$second", b"second-keys", b"S" * 32, b"B" * 32, True)
    async with node_db.write() as conn:
        assert await node_accounts.put_account(conn, first, 1) == first
    async with node_db.write() as conn:  # a login in another process lost the race: it gets the winner's
        assert await node_accounts.put_account(conn, second, 2) == first
    async with node_db.read() as conn:
        assert await node_accounts.get_account(conn, "alice") == first


async def test_keys_lock_when_the_last_session_expires(
    accounts: AccountService, keyring: KeyRing, clock: FakeClock
) -> None:
    first = await accounts.login("alice", "alice-password")
    clock.advance(SESSION_TTL / 2)
    second = await accounts.login("alice", "alice-password")

    clock.advance(SESSION_TTL / 2 + 1)  # the first session is over, the second lives on
    await accounts.expire_sessions()
    assert keyring.get("alice") is not None
    with pytest.raises(errors.NotAuthenticated):
        await accounts.authenticate(first.token)
    await accounts.authenticate(second.token)

    clock.advance(SESSION_TTL / 2)  # now the last one is over too
    await accounts.expire_sessions()
    assert keyring.get("alice") is None  # her private keys have left the node's memory
    with pytest.raises(errors.NotAuthenticated):
        await accounts.authenticate(second.token)
    assert keyring.get("alice") is None


async def test_a_request_let_in_just_before_a_logout_does_not_keep_the_session_alive(
    accounts: AccountService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request read the session from the table, then the logout ran before it went
    on: that one request is served, but the session must not be remembered past
    its logout, or the cookie would open every request for seconds more."""
    login = await accounts.login("alice", "alice-password")
    read, go_on = asyncio.Event(), asyncio.Event()
    get_session = node_accounts.get_session

    async def slow_get_session(*args: object) -> object:
        record = await get_session(*args)  # type: ignore[arg-type]
        read.set()
        await go_on.wait()
        return record

    monkeypatch.setattr(node_accounts, "get_session", slow_get_session)
    just_before = asyncio.create_task(accounts.authenticate(login.token))
    await asyncio.wait_for(read.wait(), 5)
    await accounts.logout(login.session)
    go_on.set()
    assert (await asyncio.wait_for(just_before, 5)).username == "alice"
    monkeypatch.setattr(node_accounts, "get_session", get_session)
    with pytest.raises(errors.NotAuthenticated):
        await accounts.authenticate(login.token)
