"""Full-text search over a user's messages: SQLite FTS5 (bm25 ranking, snippets).

This is the SQLite implementation of :class:`flamechat.services.search.MessageIndex`;
a PostgreSQL backend would implement the same call with ``tsvector``/``ts_rank``.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.node_messages import message_record
from flamechat.storage.records import MessageRecord

HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"
_TOKEN = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 12


def match_expression(query: str) -> str | None:
    """User text to a safe FTS5 query: every word quoted, all required, the last
    one also as a prefix (so results appear while typing). No FTS syntax from
    the user ever reaches the parser."""
    words = _TOKEN.findall(query)[:MAX_TERMS]
    if not words:
        return None
    quoted = [f'"{w}"' for w in words]
    quoted[-1] = f"{quoted[-1]}*"
    return " ".join(quoted)


async def search(
    conn: AsyncConnection,
    owner: str,
    query: str,
    *,
    peer: str | None,
    since: int | None,
    until: int | None,
    limit: int,
) -> list[tuple[MessageRecord, str]]:
    expression = match_expression(query)
    if expression is None:
        return []
    clauses = ["messages_fts MATCH :match", "m.owner = :owner"]
    params: dict[str, object] = {"match": expression, "owner": owner, "limit": limit}
    if peer is not None:
        clauses.append("m.peer = :peer")
        params["peer"] = peer
    if since is not None:
        clauses.append("m.sent_at >= :since")
        params["since"] = since
    if until is not None:
        clauses.append("m.sent_at < :until")
        params["until"] = until
    # The WHERE clauses are fixed strings chosen above; every value is a bound parameter.
    sql = text(
        "SELECT m.*, snippet(messages_fts, 0, :hs, :he, '…', 16) AS snippet "  # noqa: S608
        "FROM messages_fts JOIN messages AS m ON m.seq = messages_fts.rowid "
        f"WHERE {' AND '.join(clauses)} "
        "ORDER BY bm25(messages_fts), m.seq DESC LIMIT :limit"
    )
    params |= {"hs": HIGHLIGHT_START, "he": HIGHLIGHT_END}
    rows = await conn.execute(sql, params)
    return [(message_record(row), str(row.snippet)) for row in rows.all()]
