"""Storage: the only layer that knows SQL (SQLAlchemy Core + Alembic)."""
