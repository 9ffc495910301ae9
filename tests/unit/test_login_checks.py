"""The directory's password checks (POST /directory/v1/logins): limited per
node and per account, and run off the event loop so the directory answers
everything else meanwhile. Real storage, an in-process directory, no network."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from flamechat.crypto import KdfParams, b64encode
from flamechat.protocol import errors
from flamechat.services.accounts import AccountService
from flamechat.services.directory import DirectoryService
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.login_checks import LoginChecks, LoginCheckSettings
from flamechat.services.passwords import make_hasher
from flamechat.storage.database import Database
from tests.unit import directory_support
from tests.unit.directory_support import DIRECTORY_KEY, NODE_KEY, InProcessDirectory
from tests.unit.support import FakeClock, node_key

clock = directory_support.clock
directory_db_template = directory_support.directory_db_template
directory_service = directory_support.directory_service

OTHER_NODE = node_key("other")
PER_ACCOUNT, PER_NODE = 3, 8


@pytest.fixture
async def limited(directory_service: DirectoryService) -> DirectoryService:
    """The test directory with small limits, and a second node registered."""
    directory_service.login_checks = LoginChecks(
        LoginCheckSettings(per_node_per_minute=PER_NODE, per_account_per_minute=PER_ACCOUNT)
    )
    await directory_service.register_node(
        OTHER_NODE.node_id, "http://other.test", b64encode(OTHER_NODE.public_key)
    )
    await directory_service.create_user("carol", "carol-password")
    return directory_service


async def test_a_flood_of_checks_on_one_account_is_429_while_other_accounts_still_check(
    limited: DirectoryService,
) -> None:
    for _ in range(PER_ACCOUNT):
        with pytest.raises(errors.InvalidCredentials):
            await limited.check_login(NODE_KEY.node_id, "alice", "a wrong guess")
    with pytest.raises(errors.RateLimited) as refused:
        await limited.check_login(NODE_KEY.node_id, "alice", "alice-password")  # even the right one
    assert refused.value.status == 429
    assert 1 <= refused.value.details["retry_after"] <= 60
    with pytest.raises(errors.RateLimited):  # the account's limit holds whichever node asks
        await limited.check_login(OTHER_NODE.node_id, "alice", "alice-password")
    answer = await limited.check_login(NODE_KEY.node_id, "bob", "bob-password")
    assert answer["user"]["username"] == "bob"


async def test_one_node_cannot_take_all_the_checks(limited: DirectoryService) -> None:
    for name in ("alice", "bob", "carol") * 2 + (
        "alice",
        "bob",
    ):  # PER_NODE checks, no account over its limit
        with pytest.raises(errors.InvalidCredentials):
            await limited.check_login(NODE_KEY.node_id, name, "a wrong guess")
    with pytest.raises(errors.RateLimited):
        await limited.check_login(NODE_KEY.node_id, "carol", "carol-password")
    answer = await limited.check_login(
        OTHER_NODE.node_id, "carol", "carol-password"
    )  # another node still can
    assert answer["user"]["home_node"] == OTHER_NODE.node_id


async def test_the_node_passes_the_refusal_on_and_a_known_user_still_logs_in_on_its_verifier(
    limited: DirectoryService, node_db: Database, clock: FakeClock
) -> None:
    """A node told 429 does not take the directory for down (no breaker, no offline banner); a
    user it knows logs in on its own verifier, a user it does not is told to wait."""
    view = DirectoryView(
        node_db,
        InProcessDirectory(limited, NODE_KEY.node_id),
        EventHub(),
        clock,
        pinned_key=DIRECTORY_KEY.public_key,
    )
    keyring = KeyRing()
    accounts = AccountService(
        node_db,
        view,
        keyring,
        make_hasher("minimal"),
        clock,
        node_id=NODE_KEY.node_id,
        kdf=KdfParams.minimal(),
    )
    await accounts.login("alice", "alice-password")  # alice is known here from now on
    await spend_checks(limited, "alice")  # someone else spends alice's checks at the directory

    result = await accounts.login("alice", "alice-password")
    assert result.session.username == "alice"
    with pytest.raises(errors.InvalidCredentials):  # her node's verifier still decides
        await accounts.login("alice", "a wrong guess")

    await spend_checks(limited, "bob")
    with pytest.raises(errors.RateLimited) as refused:
        await accounts.login("bob", "bob-password")  # bob has no verifier here yet
    assert refused.value.details["retry_after"] >= 1
    assert view.reachable is True
    assert (await view.resolve("carol")).username == "carol"  # the directory is still asked


async def spend_checks(service: DirectoryService, username: str) -> None:
    """Wrong guesses at ``username`` from the other node until the directory refuses more."""
    for _ in range(PER_ACCOUNT + 1):
        try:
            await service.check_login(OTHER_NODE.node_id, username, "a wrong guess")
        except errors.RateLimited:
            return
        except errors.InvalidCredentials:
            continue
    raise AssertionError("the directory never refused")


class BlockingHasher:
    """Argon2 stand-in whose verify waits until the test lets it go (or 5 s pass)."""

    def __init__(self, order: list[str]) -> None:
        self.inner = make_hasher("minimal")
        self.release = threading.Event()
        self.started = threading.Event()
        self.order = order

    def hash(self, password: str) -> str:
        return self.inner.hash(password)

    def verify(self, verifier: str, password: str) -> bool:
        self.started.set()
        self.release.wait(timeout=5)
        self.order.append("password checked")
        return self.inner.verify(verifier, password)


async def test_while_a_password_is_checked_the_directory_answers_other_requests(
    directory_db_template: Path, tmp_path: Path, clock: FakeClock
) -> None:
    import shutil

    from flamechat.storage.database import sqlite_url

    path = tmp_path / "directory.sqlite3"
    shutil.copyfile(directory_db_template, path)
    db = Database(sqlite_url(path))
    order: list[str] = []
    hasher: Any = BlockingHasher(order)
    service = DirectoryService(db, DIRECTORY_KEY, hasher, clock)
    try:
        await service.create_user("alice", "alice-password")
        await service.register_node(NODE_KEY.node_id, "http://home.test", b64encode(NODE_KEY.public_key))
        task = asyncio.create_task(service.check_login(NODE_KEY.node_id, "alice", "alice-password"))
        await asyncio.to_thread(hasher.started.wait, 5)
        await service.users()  # answered while the password check is still running
        order.append("user list answered")
        hasher.release.set()
        assert (await task)["user"]["home_node"] == NODE_KEY.node_id
        assert order == ["user list answered", "password checked"]
    finally:
        hasher.release.set()
        await db.close()


async def test_two_nodes_asking_at_once_for_a_new_user_make_only_one_of_them_home(
    limited: DirectoryService,
) -> None:
    first, second = await asyncio.gather(
        limited.check_login(NODE_KEY.node_id, "carol", "carol-password"),
        limited.check_login(OTHER_NODE.node_id, "carol", "carol-password"),
        return_exceptions=True,
    )
    outcomes = [o for o in (first, second) if not isinstance(o, BaseException)]
    refused = [o for o in (first, second) if isinstance(o, errors.WrongHomeNode)]
    assert len(outcomes) == 1, (first, second)
    assert len(refused) == 1, (first, second)
    home = outcomes[0]["node_id"]
    assert (await limited.user("carol"))["user"]["home_node"] == home
    assert refused[0].details["home_url"] == (
        "http://home.test" if home == NODE_KEY.node_id else "http://other.test"
    )
