"""Tables of the directory's database."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("username", String(32), primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("home_node", String(32)),
    Column("sign_key", LargeBinary),
    Column("box_key", LargeBinary),
    Column("binding_signature", LargeBinary),
    Column("disabled", Integer, nullable=False, default=0),
    Column("title", Text, nullable=False, default=""),
    Column("department", Text, nullable=False, default=""),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

nodes = Table(
    "nodes",
    metadata,
    Column("node_id", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("registered_at", BigInteger, nullable=False),
    Column("last_seen", BigInteger, nullable=False),
    Column("relay", Integer, nullable=False, default=0),
)

presence = Table(
    "presence",
    metadata,
    Column("username", String(32), primary_key=True),
    Column("node_id", String(32), nullable=False),
    Column("reported_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, default="online"),
    Column("status_text", Text, nullable=False, default=""),
    Column("hidden_from", Text, nullable=False, default="[]"),
)
