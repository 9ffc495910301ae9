"""Fixtures for the unit tests: a migrated node database on a temporary file.

The schema is migrated once per session into a template file; every test
gets its own copy, so tests stay independent and fast.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flamechat.storage.database import Database, migrate, sqlite_url


@pytest.fixture(scope="session")
def node_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "node.sqlite3"
    migrate(sqlite_url(path, driver="pysqlite"), "node")
    return path


@pytest.fixture
async def node_db(node_db_template: Path, tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "node.sqlite3"
    shutil.copyfile(node_db_template, path)
    db = Database(sqlite_url(path))
    try:
        yield db
    finally:
        await db.close()
