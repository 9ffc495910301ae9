"""Full-text search over a user's messages: SQLite FTS5 (bm25 ranking, snippets).

This is the SQLite implementation of :class:`flamechat.services.search.MessageIndex`;
a PostgreSQL backend would implement the same call with ``tsvector``/``ts_rank``.

Ranking is bm25 over a bounded pool: the ``POOL`` most recent matching
messages (after the person and date filters). A selective query (fewer
matches than the pool) is ranked exactly; a very common word is ranked among
its most recent uses, which keeps latency flat at a million messages and
favours what a chat user usually looks for.
"""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.node_messages import message_record
from flamechat.storage.records import MessageRecord

HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"
POOL = 2000
MAX_TERMS = 12
_TOKEN = re.compile(r"\w+", re.UNICODE)


def _phrase(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def match_expression(query: str, owner: str = "", peer: str | None = None) -> str | None:
    """User text to a safe FTS5 query: every word quoted and required, the last
    one also as a prefix (results while typing), restricted to the owner's (and
    peer's) messages. No FTS syntax from the user ever reaches the parser."""
    words = _TOKEN.findall(query)[:MAX_TERMS]
    if not words:
        return None
    quoted = [_phrase(w) for w in words]
    quoted[-1] = f"{quoted[-1]}*"
    parts = []
    if owner:
        parts.append(f"owner : {_phrase(owner)}")
    if peer:
        parts.append(f"peer : {_phrase(peer)}")
    parts.append("body : (" + " ".join(quoted) + ")")
    return " AND ".join(parts)


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
    expression = match_expression(query, owner, peer)
    if expression is None:
        return []
    filters = ["messages_fts MATCH :match", "m.owner = :owner"]
    params: dict[str, object] = {"match": expression, "owner": owner, "limit": limit, "pool": POOL}
    if peer is not None:
        filters.append("m.peer = :peer")
        params["peer"] = peer
    if since is not None:
        filters.append("m.sent_at >= :since")
        params["since"] = since
    if until is not None:
        filters.append("m.sent_at < :until")
        params["until"] = until
    params |= {"hs": HIGHLIGHT_START, "he": HIGHLIGHT_END}
    # The filters are fixed strings chosen above; every value is a bound parameter.
    sql = text(
        "SELECT m.*, pool.snippet AS snippet FROM ("  # noqa: S608
        "  SELECT messages_fts.rowid AS seq, bm25(messages_fts, 0.0, 0.0, 1.0) AS score,"
        "         snippet(messages_fts, 2, :hs, :he, '…', 16) AS snippet"
        "  FROM messages_fts JOIN messages AS m ON m.seq = messages_fts.rowid"
        f"  WHERE {' AND '.join(filters)}"
        "  ORDER BY messages_fts.rowid DESC LIMIT :pool"
        ") AS pool JOIN messages AS m ON m.seq = pool.seq "
        "ORDER BY pool.score, m.seq DESC LIMIT :limit"
    )
    rows = await conn.execute(sql, params)
    return [(message_record(row), str(row.snippet)) for row in rows.all()]
