"""The database layer under another process's lock: WAL lets reads through,
and a write that waits past the busy timeout is a 503 ``storage_busy``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from flamechat.protocol.errors import StorageBusy
from flamechat.storage.database import Database, migrate, sqlite_url


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "node.sqlite3"
    migrate(sqlite_url(path, driver="pysqlite"), "node")
    return path


@pytest.fixture
def held_write_lock(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection (as the CLI would be) inside a write transaction."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO node_facts (key, value) VALUES ('held', 'by another process')")
    try:
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_migrate_leaves_the_file_in_wal_mode(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_fresh_reads_pass_a_held_write_lock(db_path: Path, held_write_lock: sqlite3.Connection) -> None:
    db = Database(sqlite_url(db_path), busy_timeout=0.2)
    try:
        async with db.read() as conn:
            held = await conn.execute(text("SELECT count(*) FROM node_facts WHERE key = 'held'"))
            assert held.scalar() == 0  # the other transaction is not committed, and does not block
    finally:
        await db.close()


async def _put_fact(db: Database, key: str) -> None:
    async with db.write() as conn:
        await conn.execute(text("INSERT INTO node_facts (key, value) VALUES (:key, 'x')"), {"key": key})


async def test_a_write_that_outwaits_the_busy_timeout_is_storage_busy_and_then_recovers(
    db_path: Path, held_write_lock: sqlite3.Connection
) -> None:
    db = Database(sqlite_url(db_path), busy_timeout=0.2)
    try:
        with pytest.raises(StorageBusy) as raised:
            await _put_fact(db, "refused")
        assert raised.value.status == 503
        assert raised.value.details == {"retry_after": 1}

        held_write_lock.execute("COMMIT")
        held_write_lock.execute("BEGIN")  # for the fixture's ROLLBACK
        await _put_fact(db, "after")  # the lock gone, the next write goes through
        async with db.read() as conn:
            keys = await conn.execute(text("SELECT key FROM node_facts"))
            assert sorted(keys.scalars()) == ["after", "held"]
    finally:
        await db.close()
