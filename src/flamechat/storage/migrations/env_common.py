"""Alembic environment shared by the node and directory migration histories."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool


def run() -> None:
    config = context.config
    connectable = engine_from_config(
        config.get_section(config.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    connectable.dispose()
