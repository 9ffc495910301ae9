"""The one-trip SQLite driver answers exactly as SQLAlchemy's stock aiosqlite
dialect does — rows, counts, ids, RETURNING, savepoints, errors — while each
statement makes a single trip to SQLite's thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from flamechat.storage.database import sqlite_url
from flamechat.storage.sqlite_driver import DRIVER

metadata = MetaData()
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True, nullable=False),
    Column("size", Integer, nullable=False),
)


@pytest.fixture(params=[DRIVER, "aiosqlite"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The same checks against our driver and the stock one: they must agree."""
    engine = create_async_engine(sqlite_url(tmp_path / "t.sqlite3", driver=request.param))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


def test_the_node_and_directory_use_this_driver(tmp_path: Path) -> None:
    assert sqlite_url(tmp_path / "x").startswith(f"sqlite+{DRIVER}:///")


async def test_rows_counts_ids_and_returning(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = await conn.execute(insert(notes).values(name="a", size=1))
        assert first.inserted_primary_key == (1,)
        await conn.execute(insert(notes), [{"name": "b", "size": 2}, {"name": "c", "size": 3}])  # executemany
        changed = await conn.execute(update(notes).where(notes.c.size >= 2).values(size=notes.c.size * 10))
        assert changed.rowcount == 2
        returned = await conn.execute(
            update(notes).where(notes.c.name == "a").values(size=7).returning(notes.c.name, notes.c.size)
        )
        assert returned.all() == [("a", 7)]
        rows = (await conn.execute(select(notes.c.name, notes.c.size).order_by(notes.c.name))).all()
    assert rows == [("a", 7), ("b", 20), ("c", 30)]
    async with engine.connect() as conn:
        assert (await conn.execute(select(notes).where(notes.c.name == "nobody"))).first() is None
        assert await conn.scalar(select(notes.c.size).where(notes.c.name == "c")) == 30


async def test_a_failed_savepoint_rolls_back_only_its_own_block(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(notes).values(name="kept", size=1))

        async def block() -> None:
            async with conn.begin_nested():
                await conn.execute(insert(notes).values(name="lost", size=2))
                await conn.execute(insert(notes).values(name="kept", size=3))  # unique name: refused

        with pytest.raises(IntegrityError):
            await block()
    async with engine.connect() as conn:
        assert (await conn.execute(select(notes.c.name))).scalars().all() == ["kept"]


async def test_errors_keep_their_type_and_the_drivers_message(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(OperationalError) as raised:
            await conn.execute(text("SELECT * FROM no_such_table"))
    # Database.read()/write() tell a lock from other failures by the driver's own message.
    assert "no such table" in str(raised.value.orig)


async def test_each_statement_is_one_trip_to_sqlites_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_async_engine(sqlite_url(tmp_path / "t.sqlite3"))
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(insert(notes), [{"name": str(n), "size": n} for n in range(10)])
    trips = 0
    stock = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: object, *args: object, **kwargs: object) -> object:
        nonlocal trips
        trips += 1
        return await stock(self, fn, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the pool's connection is warm from here on
        trips = 0
        rows = (await conn.execute(select(notes).where(notes.c.size < 5))).all()
        await conn.execute(update(notes).where(notes.c.size == 1).values(size=100))
        await conn.commit()
        statement_trips = trips
    await engine.dispose()
    assert len(rows) == 5
    assert statement_trips == 3  # the SELECT, the UPDATE, the COMMIT; the stock dialect makes 8
