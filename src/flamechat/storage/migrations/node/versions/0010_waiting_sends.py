"""Messages to someone who has not signed in yet wait unsealed on the sender's node.

A user an administrator just created has no keys until their first login, so
nothing can be sealed to them. Such a message is stored in the history in
state ``waiting``, and its kind and body here, until their keys are known:
then it is sealed with its original id and sent_at and moved to the outbox.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "waiting_sends",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("peer", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("sent_at", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("owner", "message_id", name="uq_waiting_owner_message"),
    )
    op.create_index("ix_waiting_pair", "waiting_sends", ["owner", "peer", "sent_at"])
    op.create_index("ix_waiting_expiry", "waiting_sends", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_waiting_expiry", "waiting_sends")
    op.drop_index("ix_waiting_pair", "waiting_sends")
    op.drop_table("waiting_sends")
