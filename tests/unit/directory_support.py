"""A real DirectoryService behind the DirectoryPort a node uses, in this process.

Answers are the directory's own signed JSON, so node services see exactly
what they would over HTTP; refusals become the TransportError the HTTP
client raises. ``tamper`` lets a test alter every answer on its way, and ``forged`` replace
every answer (a refusal too) with one of its choosing.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from flamechat.crypto import b64encode
from flamechat.protocol import errors
from flamechat.services.directory import DirectoryService
from flamechat.services.passwords import make_hasher
from flamechat.services.ports import TransportError
from flamechat.storage.database import Database, migrate, sqlite_url
from flamechat.storage.records import PresenceEntry
from tests.unit.support import FakeClock, node_key

DIRECTORY_KEY = node_key("directory")
NODE_KEY = node_key("home")


class InProcessDirectory:
    """:class:`~flamechat.services.ports.DirectoryPort` calling the service directly, as ``node_id``."""

    def __init__(self, service: DirectoryService, node_id: str) -> None:
        self.service = service
        self.node_id = node_id
        self.tamper: Callable[[dict[str, Any]], dict[str, Any]] = lambda answer: answer
        self.key_answer: dict[str, Any] | None = None  # what GET /key says, if not the truth
        self.forged: dict[str, Any] | None = None  # handed back instead of any answer, even a refusal
        self.calls: list[str] = []

    async def _answer(self, name: str, call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(name)
        try:
            answer = await call
        except errors.FlameError as exc:
            if self.forged is not None:
                return self.forged
            raise TransportError(
                exc.message,
                transient=exc.status >= 500 or exc.status == 429,
                status=exc.status,
                code=exc.code,
                peer_message=exc.message,
                peer_details=exc.details,
            ) from exc
        return self.forged if self.forged is not None else self.tamper(answer)

    async def fetch_key(self) -> dict[str, Any]:
        self.calls.append("fetch_key")
        return self.key_answer or {"public_key": b64encode(self.service.key.public_key)}

    async def register_node(self, url: str, public_key: str, relay: bool) -> dict[str, Any]:
        return await self._answer(
            "register_node", self.service.register_node(self.node_id, url, public_key, relay=relay)
        )

    async def list_nodes(self) -> dict[str, Any]:
        return await self._answer("list_nodes", self.service.nodes())

    async def get_node(self, node_id: str) -> dict[str, Any]:
        return await self._answer("get_node", self.service.node_record(node_id))

    async def check_login(self, username: str, password: str) -> dict[str, Any]:
        return await self._answer("check_login", self.service.check_login(self.node_id, username, password))

    async def publish_keys(self, username: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._answer(
            "publish_keys",
            self.service.publish_keys(
                self.node_id, username, body["sign_key"], body["box_key"], body["binding_signature"]
            ),
        )

    async def get_user(self, username: str) -> dict[str, Any]:
        return await self._answer("get_user", self.service.user(username, asking_node=self.node_id))

    async def list_users(self) -> dict[str, Any]:
        return await self._answer("list_users", self.service.users(asking_node=self.node_id))

    async def report_presence(self, users: list[dict[str, Any]]) -> None:
        entries = [
            PresenceEntry(u["username"], u["status"], u["status_text"], tuple(u["hidden_from"]))
            for u in users
        ]
        await self.service.report_presence(self.node_id, entries)

    async def set_card(self, username: str, card: dict[str, str]) -> dict[str, Any]:
        return await self._answer("set_card", self.service.set_card(self.node_id, username, **card))


@pytest.fixture(scope="session")
def directory_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("directory-template") / "directory.sqlite3"
    migrate(sqlite_url(path, driver="pysqlite"), "directory")
    return path


@pytest.fixture
def clock() -> FakeClock:
    """The one fake clock of a test: the directory's and the node's."""
    return FakeClock()


@pytest.fixture
async def directory_service(
    directory_db_template: Path, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[DirectoryService]:
    """A directory with alice and bob (password ``<name>-password``) and the home node registered."""
    path = tmp_path / "directory.sqlite3"
    shutil.copyfile(directory_db_template, path)
    db = Database(sqlite_url(path))
    service = DirectoryService(db, DIRECTORY_KEY, make_hasher("minimal"), clock)
    try:
        for name in ("alice", "bob"):
            await service.create_user(name, f"{name}-password")
        await service.register_node(NODE_KEY.node_id, "http://home.test", b64encode(NODE_KEY.public_key))
        yield service
    finally:
        await db.close()
