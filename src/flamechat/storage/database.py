"""Engine creation, connection pragmas, transactions and migrations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from flamechat.protocol.errors import StorageBusy
from flamechat.storage.sqlite_driver import DRIVER as ASYNC_SQLITE_DRIVER

MIGRATIONS = Path(__file__).parent / "migrations"

# How long a statement waits for another connection's lock before SQLITE_BUSY.
# Passed to sqlite3.connect() so that it covers the connection's very first
# read too: a fresh connection must read the WAL index, and while a writer
# commits back to back that first read can find it locked (measured: with no
# wait, about 7 % of fresh connections failed so under a busy writer).
BUSY_TIMEOUT_S = 30.0
READ_POOL_SIZE = 32


def sqlite_url(path: Path, *, driver: str = ASYNC_SQLITE_DRIVER) -> str:
    return f"sqlite+{driver}:///{path}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # journal_mode=WAL is a property of the file, set once by migrate(): asserting
    # it again on every new connection is one more statement that needs a lock.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=FULL")  # 2xx only after the data is on disk
    cursor.execute("PRAGMA foreign_keys=ON")
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

    def __init__(self, url: str, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args = {"timeout": busy_timeout} if self.is_sqlite else {}
        self.engine: AsyncEngine = create_async_engine(url, connect_args=connect_args)
        # Reads need no transaction (WAL gives each statement a snapshot): a pool
        # of autocommit connections saves a BEGIN and a ROLLBACK per read. The
        # pool is large enough for a busy node's concurrent reads and has no
        # overflow: every aiosqlite connection is a thread, costly to open, and a
        # fresh connection's first read is the one that can meet a lock, so
        # connections are kept rather than opened and closed under load.
        self.read_engine: AsyncEngine = create_async_engine(
            url,
            connect_args=connect_args,
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
            pool_size=READ_POOL_SIZE,
            max_overflow=0,
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
        with _busy_as_storage_busy():
            async with self._write() as conn:
                yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._write_lock:
            if self._group is None:
                conn = await self.engine.connect()
                try:
                    await conn.begin()  # BEGIN IMMEDIATE: may wait, and fail, on another process's lock
                except BaseException:
                    await conn.close()
                    raise
                self._group = conn
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
        with _busy_as_storage_busy():
            async with self.read_engine.connect() as conn:
                yield conn

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        await self.read_engine.dispose()
        await self.engine.dispose()


@contextlib.contextmanager
def _busy_as_storage_busy() -> Iterator[None]:
    """A lock still held after BUSY_TIMEOUT_S is a 503 to retry, not a 500."""
    try:
        yield
    except OperationalError as exc:
        if "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
            raise
        raise StorageBusy("the database is busy; try again shortly", retry_after=1) from exc


def migrate(sync_url: str, schema: str) -> None:
    """Bring the database at ``sync_url`` to the newest revision of ``schema``.

    ``schema`` is ``"node"`` or ``"directory"``: each has its own history.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS / schema))
    config.set_main_option("sqlalchemy.url", sync_url)
    command.upgrade(config, "head")
    if sync_url.startswith("sqlite"):
        _use_wal(sync_url)


def _use_wal(sync_url: str) -> None:
    """Put the file in WAL mode (readers never wait for the writer), once.

    The mode is read first and set only if needed: every process start runs
    this, and setting it takes a lock that the running servers would meet.
    """
    engine = create_engine(sync_url, connect_args={"timeout": BUSY_TIMEOUT_S})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").all()  # learn the file's mode
            if str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower() != "wal":
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    finally:
        engine.dispose()
