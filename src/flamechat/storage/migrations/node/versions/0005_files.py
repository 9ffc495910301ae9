"""Files: uploads in progress, attachments (sent and received), blob grants.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="text"))
    op.create_table(
        "uploads",
        sa.Column("owner", sa.String(32), primary_key=True),
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("peer", sa.String(32), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("declared_type", sa.Text, nullable=False),
        sa.Column("file_key", sa.LargeBinary, nullable=False),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "attachments",
        sa.Column("owner", sa.String(32), primary_key=True),
        sa.Column("message_id", sa.String(36), primary_key=True),
        sa.Column("blob_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("declared_type", sa.Text, nullable=False),
        sa.Column("sniffed_type", sa.Text),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("file_key", sa.LargeBinary, nullable=False),
        sa.Column("source_node", sa.String(32), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("thumbnail", sa.LargeBinary),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_attachments_due", "attachments", ["state", "next_attempt_at"])
    op.create_index("ix_attachments_blob", "attachments", ["blob_id"])
    op.create_table(
        "blob_grants",
        sa.Column("blob_id", sa.String(64), primary_key=True),
        sa.Column("recipient", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("blob_grants")
    op.drop_index("ix_attachments_blob", "attachments")
    op.drop_index("ix_attachments_due", "attachments")
    op.drop_table("attachments")
    op.drop_table("uploads")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("kind")
