"""Initial directory schema.

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
        "accounts",
        sa.Column("username", sa.String(32), primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("home_node", sa.String(32)),
        sa.Column("sign_key", sa.LargeBinary),
        sa.Column("box_key", sa.LargeBinary),
        sa.Column("binding_signature", sa.LargeBinary),
        sa.Column("disabled", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(32), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("registered_at", sa.BigInteger, nullable=False),
        sa.Column("last_seen", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "presence",
        sa.Column("username", sa.String(32), primary_key=True),
        sa.Column("node_id", sa.String(32), nullable=False),
        sa.Column("reported_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("presence", "nodes", "accounts"):
        op.drop_table(table)
