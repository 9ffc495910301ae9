"""Search: the owner of each message becomes part of the full-text index.

Before, FTS5 found every user's matches newest first and the owner was
filtered afterwards: on a node of many users, a common word walked through
everybody's messages to find the asker's. Now each indexed row also holds
one token naming its owner (``o<hex of the owner's UTF-8>x``: letters and
digits only, so the tokenizer keeps it whole, and no stemming rule ends in
``x``), and a search can match ``owner_tag : "o…x" AND (…)``.

``search_owners`` counts each owner's messages, kept by the same triggers:
``storage/node_search.py`` matches the owner's token only when the owner
holds a small share of the node's messages (bm25 counts every row holding a
token, and on a personal node the owner's token is on every row).

The index still reads its text from ``messages`` (external content), through
a view that adds the computed tag; the triggers write the same tag. The old
index is dropped and the new one rebuilt from every stored message, and the
counts are taken from it. (Virtual tables cannot be altered, batch mode or
not: they are replaced.)

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _drop_index() -> None:
    for trigger in ("messages_fts_update", "messages_fts_delete", "messages_fts_insert"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS messages_fts")
    op.execute("DROP VIEW IF EXISTS messages_fts_content")
    op.execute("DROP TABLE IF EXISTS search_owners")


_COUNT_NEW = (
    "INSERT INTO search_owners(owner, messages) VALUES (new.owner, 1) "
    "ON CONFLICT(owner) DO UPDATE SET messages = messages + 1; "
)
_UNCOUNT_OLD = "UPDATE search_owners SET messages = messages - 1 WHERE owner = old.owner; "


def upgrade() -> None:
    _drop_index()
    op.execute("CREATE TABLE search_owners (owner VARCHAR(32) PRIMARY KEY, messages INTEGER NOT NULL)")
    op.execute(
        "INSERT INTO search_owners(owner, messages) SELECT owner, count(*) FROM messages GROUP BY owner"
    )
    op.execute(
        "CREATE VIEW messages_fts_content AS "
        "SELECT seq, body, 'o' || hex(owner) || 'x' AS owner_tag FROM messages"
    )
    op.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        "body, owner_tag, content='messages_fts_content', content_rowid='seq', "
        "tokenize='porter unicode61 remove_diacritics 2')"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, body, owner_tag) "
        "VALUES (new.seq, new.body, 'o' || hex(new.owner) || 'x'); " + _COUNT_NEW + "END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body, owner_tag) "
        "VALUES ('delete', old.seq, old.body, 'o' || hex(old.owner) || 'x'); " + _UNCOUNT_OLD + "END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body, owner ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body, owner_tag) "
        "VALUES ('delete', old.seq, old.body, 'o' || hex(old.owner) || 'x'); "
        "INSERT INTO messages_fts(rowid, body, owner_tag) "
        "VALUES (new.seq, new.body, 'o' || hex(new.owner) || 'x'); " + _UNCOUNT_OLD + _COUNT_NEW + "END"
    )
    op.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")


def downgrade() -> None:
    # Back to 0004's index: bodies only, the owner filtered after matching.
    _drop_index()
    op.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        "body, content='messages', content_rowid='seq', "
        "tokenize='porter unicode61 remove_diacritics 2')"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.seq, new.body); END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.seq, old.body); END"
    )
    op.execute(
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.seq, old.body); "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.seq, new.body); END"
    )
    op.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
