"""Messages edited or deleted for everyone by their sender.

``edited_at`` and ``deleted_at`` are the ``sent_at`` of the amend envelope that
changed the row last (an older amend that arrives late changes nothing).
``early_amends`` keeps an amend that arrived before the message it names (they
may travel by different roads: direct, relay, retry); it is applied when the
message comes. It also keeps, as ``remove``, a received message its recipient
deleted for themselves, so that a late copy of it (a retry, a relay) does not
bring it back. Plain ``ADD COLUMN``: a batch rebuild of ``messages`` would drop
the search index's triggers.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("edited_at", sa.BigInteger, nullable=True))
    op.add_column("messages", sa.Column("deleted_at", sa.BigInteger, nullable=True))
    op.create_table(
        "early_amends",
        sa.Column("owner", sa.String(32), primary_key=True),
        sa.Column("message_id", sa.String(36), primary_key=True),
        sa.Column("peer", sa.String(32), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),  # edit, delete, remove
        sa.Column("text", sa.Text, nullable=True),  # the new text of an edit
        sa.Column("amended_at", sa.BigInteger, nullable=False),
        sa.Column("stored_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_early_amends_stored", "early_amends", ["stored_at"])


def downgrade() -> None:
    op.drop_index("ix_early_amends_stored", "early_amends")
    op.drop_table("early_amends")
    op.drop_column("messages", "deleted_at")
    op.drop_column("messages", "edited_at")
