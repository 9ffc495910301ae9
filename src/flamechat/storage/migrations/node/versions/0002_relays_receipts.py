"""Relay storage, relay flag on known nodes, sender-order index.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_store",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("envelope_id", sa.String(36), nullable=False),
        sa.Column("recipient", sa.String(32), nullable=False),
        sa.Column("recipient_node", sa.String(32), nullable=False),
        sa.Column("depositor", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("deposited_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("envelope_id", "recipient", name="uq_relay_envelope_recipient"),
    )
    op.create_index("ix_relay_recipient_node", "relay_store", ["recipient_node", "seq"])
    with op.batch_alter_table("known_nodes") as batch:
        batch.add_column(sa.Column("relay", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_messages_order", "messages", ["owner", "peer", "sent_at", "seq"])


def downgrade() -> None:
    op.drop_index("ix_messages_order", "messages")
    with op.batch_alter_table("known_nodes") as batch:
        batch.drop_column("relay")
    op.drop_index("ix_relay_recipient_node", "relay_store")
    op.drop_table("relay_store")
