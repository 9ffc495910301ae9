"""Initial node schema.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_facts",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "local_accounts",
        sa.Column("username", sa.String(32), primary_key=True),
        sa.Column("verifier", sa.Text, nullable=False),
        sa.Column("wrapped_keys", sa.LargeBinary, nullable=False),
        sa.Column("sign_key", sa.LargeBinary, nullable=False),
        sa.Column("box_key", sa.LargeBinary, nullable=False),
        sa.Column("keys_published", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("lookup_id", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(32), nullable=False, index=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("wrapped_keys", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "known_users",
        sa.Column("username", sa.String(32), primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("home_node", sa.String(32)),
        sa.Column("node_url", sa.Text),
        sa.Column("sign_key", sa.LargeBinary),
        sa.Column("box_key", sa.LargeBinary),
        sa.Column("online", sa.Integer, nullable=False),
        sa.Column("fetched_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "known_nodes",
        sa.Column("node_id", sa.String(32), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("fetched_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "messages",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("peer", sa.String(32), nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("sender", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("sent_at", sa.BigInteger, nullable=False),
        sa.Column("stored_at", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint("owner", "id", name="uq_messages_owner_id"),
    )
    op.create_index("ix_messages_conversation", "messages", ["owner", "peer", "seq"])
    op.create_table(
        "outbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("envelope_id", sa.String(36), nullable=False),
        sa.Column("sender", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("envelope_id", "recipient", name="uq_outbox_envelope_recipient"),
    )
    op.create_index("ix_outbox_due", "outbox", ["next_attempt_at"])
    op.create_table(
        "inbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("envelope_id", sa.String(36), nullable=False),
        sa.Column("sender", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("recipient", "envelope_id", name="uq_inbox_recipient_envelope"),
    )


def downgrade() -> None:
    for table in (
        "inbox",
        "outbox",
        "messages",
        "known_nodes",
        "known_users",
        "sessions",
        "local_accounts",
        "node_facts",
    ):
        op.drop_table(table)
