"""Engine creation, connection pragmas, transactions and migrations."""

from __future__ import annotations

import asyncio
import contextlib
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
    dbapi_connection.isolation_level = None  # see _sqlite_begin


def _sqlite_begin(conn: Any) -> None:
    # Take BEGIN away from the sqlite3 module (whose implicit transactions
    # do not mix with SAVEPOINTs) and emit it ourselves: SQLAlchemy's
    # documented recipe for SQLite savepoints. IMMEDIATE takes the write
    # lock up front (waiting up to busy_timeout for another process), so a
    # transaction that reads before it writes never fails to upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One database. ``write()`` is a transaction; ``read()`` a plain connection.

    SQLite allows one writer at a time: writes inside this process queue on
    an asyncio lock instead of failing with SQLITE_BUSY, while reads run
    concurrently under WAL. Other processes (the CLI) wait on busy_timeout.

    Group commit: a durable commit costs an fsync (0.15 ms on a quiet disk,
    several ms on a busy one), so writers that queue up while one runs share
    its transaction. Each writer's block runs in a SAVEPOINT of its own (an
    exception rolls back that block only and reaches that writer only), and
    ``write()`` returns to every writer only after the one COMMIT that made
    its block durable: "2xx only after the data is on disk" still holds,
    and a burst of N writers costs one fsync instead of N.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine: AsyncEngine = create_async_engine(url)
        # Reads need no transaction (WAL gives each statement a snapshot): a pool
        # of autocommit connections saves a BEGIN and a ROLLBACK per read. The
        # pool is large enough for a busy node's concurrent reads, since every
        # aiosqlite connection is a thread, costly to open and close per request.
        self.read_engine: AsyncEngine = create_async_engine(
            url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None, pool_size=32, max_overflow=32
        )
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
            event.listen(self.read_engine.sync_engine, "connect", _sqlite_pragmas)
        self._write_lock = asyncio.Lock()
        self._group: AsyncConnection | None = None
        self._waiting: list[asyncio.Future[None]] = []
        self.commits = 0  # how many group commits ran (for tests and benchmarks)
        self._committer: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self._write_lock:
            if self._group is None:
                self._group = await self.engine.connect()
                await self._group.begin()
                self._committer = asyncio.get_running_loop().create_task(self._commit_group())
            conn = self._group
            async with conn.begin_nested():
                yield conn
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(done)
        await done

    async def _commit_group(self) -> None:
        """Commit once every writer already queued has run its block."""
        async with self._write_lock:
            conn, self._group = self._group, None
            waiting, self._waiting = self._waiting, []
            if conn is None:
                return
            try:
                await conn.commit()
                self.commits += 1
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await conn.rollback()
                for done in waiting:
                    if not done.done():
                        done.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                if not isinstance(exc, Exception):
                    raise
            else:
                for done in waiting:
                    if not done.done():
                        done.set_result(None)
            finally:
                await conn.close()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.read_engine.connect() as conn:
            yield conn

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        await self.read_engine.dispose()
        await self.engine.dispose()


def migrate(sync_url: str, schema: str) -> None:
    """Bring the database at ``sync_url`` to the newest revision of ``schema``.

    ``schema`` is ``"node"`` or ``"directory"``: each has its own history.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS / schema))
    config.set_main_option("sqlalchemy.url", sync_url)
    command.upgrade(config, "head")
