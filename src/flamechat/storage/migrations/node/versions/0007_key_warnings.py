"""Key continuity: the keys last seen for each user, and which local users have
not yet confirmed another user's new keys.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_pins",
        sa.Column("username", sa.String(32), primary_key=True),
        sa.Column("sign_key", sa.LargeBinary, nullable=False),
        sa.Column("box_key", sa.LargeBinary, nullable=False),
        sa.Column("pinned_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "key_warnings",
        sa.Column("viewer", sa.String(32), primary_key=True),
        sa.Column("username", sa.String(32), primary_key=True),
        sa.Column("old_sign_key", sa.LargeBinary, nullable=False),
        sa.Column("new_sign_key", sa.LargeBinary, nullable=False),
        sa.Column("changed_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_warnings")
    op.drop_table("key_pins")
