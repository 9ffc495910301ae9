"""Title and department on accounts; status, status text and hidden_from on presence.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("title", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("department", sa.Text, nullable=False, server_default=""))
    with op.batch_alter_table("presence") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="online"))
        batch.add_column(sa.Column("status_text", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("hidden_from", sa.Text, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("presence") as batch:
        for column in ("hidden_from", "status_text", "status"):
            batch.drop_column(column)
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("department")
        batch.drop_column("title")
