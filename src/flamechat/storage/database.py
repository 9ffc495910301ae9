"""Engine creation, connection pragmas, transactions and migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_url(path: Path, *, driver: str = "aiosqlite") -> str:
    return f"sqlite+{driver}:///{path}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # 2xx only after the data is on disk
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Database:
    """One database. ``write()`` is a transaction; ``read()`` a plain connection.

    SQLite allows one writer at a time: writes inside this process queue on
    an asyncio lock instead of failing with SQLITE_BUSY, while reads run
    concurrently under WAL. Other processes (the CLI) wait on busy_timeout.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine: AsyncEngine = create_async_engine(url)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._write_lock = asyncio.Lock()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def migrate(sync_url: str, schema: str) -> None:
    """Bring the database at ``sync_url`` to the newest revision of ``schema``.

    ``schema`` is ``"node"`` or ``"directory"``: each has its own history.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS / schema))
    config.set_main_option("sqlalchemy.url", sync_url)
    command.upgrade(config, "head")
