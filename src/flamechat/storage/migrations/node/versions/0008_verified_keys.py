"""Verified contacts: the keys a local user compared safety numbers for.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verified_keys",
        sa.Column("viewer", sa.String(32), primary_key=True),
        sa.Column("username", sa.String(32), primary_key=True),
        sa.Column("sign_key", sa.LargeBinary, nullable=False),
        sa.Column("box_key", sa.LargeBinary, nullable=False),
        sa.Column("verified_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("verified_keys")
