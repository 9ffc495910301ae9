"""Outbox index by (sender, recipient, seq): the worker keeps each pair in order.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_pair", "outbox", ["sender", "recipient", "seq"])


def downgrade() -> None:
    op.drop_index("ix_outbox_pair", "outbox")
