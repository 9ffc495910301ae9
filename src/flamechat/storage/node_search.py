"""Full-text search over a user's messages: SQLite FTS5 (bm25 ranking, snippets).

This is the SQLite implementation of :class:`flamechat.services.search.MessageIndex`;
a PostgreSQL backend would implement the same call with ``tsvector``/``ts_rank``.

How it stays fast at a million messages (bench/search.py):

* The owner can be part of the match: each indexed row holds a token naming
  its owner (migration 0009), and a search for someone who holds a small
  share of the node's messages matches ``owner_tag : "o…x" AND (…)``.
  FTS5 intersects the two posting lists, so the other users' messages are
  never walked, however many there are on the node. Someone who holds a
  large share (``search_owners`` counts them; everyone on a personal node)
  is matched on the words alone and filtered after, which walks at most a
  few times their own matches: matching their token would make bm25 count
  every row that holds it, that is, all their messages, on every search.
* Ranking is bm25 (on the body alone) over a bounded pool: the ``POOL`` most
  recent matching messages that pass the person and date filters (FTS5 walks
  its posting lists newest first and stops there). A selective query is
  ranked exactly; a very common word is ranked among its most recent uses.
* Snippets are made only for the page of results, in a second small query.
* Words are matched whole (Porter-stemmed), not as prefixes: expanding a
  prefix of a common word into every term it starts costs ~10x.
"""

from __future__ import annotations

import re

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.node_messages import message_record
from flamechat.storage.records import MessageRecord

HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"
POOL = 1000
MAX_TERMS = 12
# Match the owner's token when they hold less than 1/OWNER_SHARE of the messages:
# otherwise filtering afterwards walks at most OWNER_SHARE times their matches.
OWNER_SHARE = 4
_TOKEN = re.compile(r"\w+", re.UNICODE)


def match_expression(query: str) -> str | None:
    """User text to a safe FTS5 query: every word quoted and required. No FTS
    syntax from the user ever reaches the parser."""
    words = _TOKEN.findall(query)[:MAX_TERMS]
    if not words:
        return None
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


def owner_tag(owner: str) -> str:
    """The token that names ``owner`` in the index (the triggers of migration 0009
    write ``'o' || hex(owner) || 'x'``; the tokenizer folds the case)."""
    return "o" + owner.encode().hex() + "x"


def owned_match(owner: str, expression: str) -> str:
    """``expression`` over ``owner``'s messages only.

    The words are not confined to the body column (``body : (…)``): that makes
    FTS5 read every match's positions, about 8 ms more at p95 for a common
    word over a million messages. A word could then match an owner's token
    only if someone typed that token; the search still keeps only the asker's
    own messages (``m.owner``), so it finds nothing that is not theirs.
    """
    return f'owner_tag : "{owner_tag(owner)}" AND ({expression})'


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
    words = match_expression(query)
    if words is None:
        return []
    counted = await conn.execute(
        text(
            "SELECT (SELECT messages FROM search_owners WHERE owner = :owner) AS mine,"
            " (SELECT sum(messages) FROM search_owners) AS total"
        ),
        {"owner": owner},
    )
    mine, total = counted.one()
    many_others = (mine or 0) * OWNER_SHARE < (total or 0)
    expression = owned_match(owner, words) if many_others else words
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
    # The filters are fixed strings chosen above; every value is a bound parameter.
    ranked = text(
        "SELECT seq FROM ("  # noqa: S608
        "  SELECT messages_fts.rowid AS seq, bm25(messages_fts, 1.0, 0.0) AS score"
        "  FROM messages_fts JOIN messages AS m ON m.seq = messages_fts.rowid"
        f"  WHERE {' AND '.join(filters)}"
        "  ORDER BY messages_fts.rowid DESC LIMIT :pool"
        ") ORDER BY score, seq DESC LIMIT :limit"
    )
    seqs = [row.seq for row in (await conn.execute(ranked, params)).all()]
    if not seqs:
        return []
    details = text(
        "SELECT m.*, snippet(messages_fts, 0, :hs, :he, '…', 16) AS snippet "
        "FROM messages_fts JOIN messages AS m ON m.seq = messages_fts.rowid "
        "WHERE messages_fts MATCH :match AND messages_fts.rowid IN :seqs"
    ).bindparams(bindparam("seqs", expanding=True))
    rows = await conn.execute(
        details, {"match": expression, "seqs": seqs, "hs": HIGHLIGHT_START, "he": HIGHLIGHT_END}
    )
    by_seq = {row.seq: (message_record(row), str(row.snippet)) for row in rows.all()}
    return [by_seq[seq] for seq in seqs if seq in by_seq]
