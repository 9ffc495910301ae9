"""Replies: the message a message answers, by id (``reply_to``), as its sender
sealed it. Each side shows the quote from its own copy of that message.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("reply_to", sa.String(36), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "reply_to")
