"""Search (services/search.py) over a real node database: FTS5 for messages,
the directory cache and cached profiles for people."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.profiles import ProfileService
from flamechat.services.search import MAX_RESULTS, SearchService
from flamechat.storage import node_cache, node_messages, node_search, node_social
from flamechat.storage.database import MIGRATIONS, Database, migrate, sqlite_url
from flamechat.storage.node_social import StoredProfile
from flamechat.storage.records import KnownUser
from tests.unit.support import FakeClock

ME = "n" + "m" * 24
DAY = 86_400_000
T0 = 1_800_000_000_000


class Unreachable:
    """Directory and peer ports that are never called by search."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"search must not call {name} on the network")


@pytest.fixture
async def search(node_db: Database) -> SearchService:
    clock = FakeClock()
    directory = DirectoryView(node_db, Unreachable(), EventHub(), clock, pinned_key=b"\0" * 32)
    profiles = ProfileService(node_db, directory, Unreachable(), KeyRing(), clock, node_id=ME)
    return SearchService(node_db, directory, profiles)


async def store(db: Database, owner: str, peer: str, body: str, sent_at: int, n: int) -> str:
    message_id = f"00000000-0000-7000-8000-{n:012d}"
    async with db.write() as conn:
        await node_messages.add_message(
            conn,
            owner=owner,
            peer=peer,
            message_id=message_id,
            direction="out" if n % 2 else "in",
            sender=owner if n % 2 else peer,
            recipient=peer if n % 2 else owner,
            body=body,
            sent_at=sent_at,
            state="sent",
            now=sent_at,
        )
    return message_id


@pytest.fixture
async def history(node_db: Database) -> dict[str, str]:
    rows = [
        ("alice", "bob", "The quarterly meeting moved to Thursday", T0),
        ("alice", "bob", "Lunch after the meetings?", T0 + DAY),
        ("alice", "carol", "Budget meeting notes are in the shared folder", T0 + 2 * DAY),
        ("alice", "carol", "Thanks for the budget", T0 + 3 * DAY),
        ("bob", "alice", "bob's private copy: meeting with the board", T0),
        ("alice", "bob", "Café crème at noon", T0 + 4 * DAY),
    ]
    ids = {}
    for n, (owner, peer, body, sent_at) in enumerate(rows, start=1):
        ids[body] = await store(node_db, owner, peer, body, sent_at, n)
    return ids


def bodies(hits: list[dict[str, Any]]) -> list[str]:
    return [hit["message"]["body"] for hit in hits]


async def test_a_word_finds_the_users_own_messages_only(
    search: SearchService, history: dict[str, str]
) -> None:
    found = await search.messages("alice", "meeting")
    assert sorted(bodies(found)) == sorted(
        [
            "The quarterly meeting moved to Thursday",
            "Lunch after the meetings?",  # Porter stemming: meetings ~ meeting
            "Budget meeting notes are in the shared folder",
        ]
    )
    assert all(hit["message"]["conversation"] in {"bob", "carol"} for hit in found)
    # bob's copy on the same node is bob's, not alice's.
    assert "bob's private copy: meeting with the board" not in bodies(found)


async def test_every_word_is_required(search: SearchService, history: dict[str, str]) -> None:
    assert bodies(await search.messages("alice", "budget meeting")) == [
        "Budget meeting notes are in the shared folder"
    ]
    assert await search.messages("alice", "budget thursday") == []


async def test_filters_by_person_and_date(search: SearchService, history: dict[str, str]) -> None:
    assert bodies(await search.messages("alice", "meeting", peer="carol")) == [
        "Budget meeting notes are in the shared folder"
    ]
    assert sorted(bodies(await search.messages("alice", "meeting", since=T0 + DAY))) == sorted(
        ["Lunch after the meetings?", "Budget meeting notes are in the shared folder"]
    )
    assert bodies(await search.messages("alice", "meeting", until=T0 + DAY)) == [
        "The quarterly meeting moved to Thursday"
    ]
    assert await search.messages("alice", "meeting", peer="dave") == []


async def test_snippets_highlight_the_matched_word(search: SearchService, history: dict[str, str]) -> None:
    (hit,) = await search.messages("alice", "thursday")
    start, end = node_search.HIGHLIGHT_START, node_search.HIGHLIGHT_END
    assert f"{start}Thursday{end}" in hit["snippet"]
    assert hit["message"]["id"] == history["The quarterly meeting moved to Thursday"]


async def test_accents_are_folded(search: SearchService, history: dict[str, str]) -> None:
    assert bodies(await search.messages("alice", "cafe creme")) == ["Café crème at noon"]


@pytest.mark.parametrize(
    "query",
    [
        '"',
        "'",
        "meeting OR budget",
        "NEAR(meeting budget)",
        "meet*",
        "-meeting",
        "body:meeting",
        "^meeting",
        "(",
        ")",
        "meeting AND",
        "a:b:c",
        "\x00",
        "",
        "   ",
        "🔥",
        "*",
        ":",
        '"meeting',
        "budget\"'",
    ],
)
async def test_search_syntax_from_the_user_never_reaches_fts(
    search: SearchService, history: dict[str, str], query: str
) -> None:
    hits = await search.messages("alice", query)
    assert isinstance(hits, list)  # no SQL error, whatever the query


async def test_fts_operators_are_plain_words(search: SearchService, history: dict[str, str]) -> None:
    # "OR" is a required word, not an operator: nothing holds "meeting", "or" and "budget".
    assert await search.messages("alice", "thursday OR budget") == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(max_size=30))
async def test_any_query_is_answered_without_error(search: SearchService, query: str) -> None:
    hits = await search.messages("alice", query)
    assert isinstance(hits, list)


async def test_the_result_count_is_bounded(search: SearchService, node_db: Database) -> None:
    for n in range(MAX_RESULTS + 10):
        await store(node_db, "alice", "bob", f"status report number {n}", T0 + n, 100 + n)
    assert len(await search.messages("alice", "report", limit=1000)) == MAX_RESULTS
    assert len(await search.messages("alice", "report", limit=0)) == 1
    assert len(await search.messages("alice", "report", limit=5)) == 5


# --- many users on one node ------------------------------------------------------------------


async def test_other_owners_matches_never_show_and_never_crowd_out_the_askers(
    search: SearchService, node_db: Database
) -> None:
    mine = await store(node_db, "alice", "bob", "the old report", T0, 1)
    async with node_db.write() as conn:  # 2000 newer matches, all another user's
        for n in range(2000):
            await node_messages.add_message(
                conn,
                owner="bob",
                peer="carol",
                message_id=f"00000000-0000-7000-9000-{n:012d}",
                direction="in",
                sender="carol",
                recipient="bob",
                body=f"report {n}",
                sent_at=T0 + 1 + n,
                state="sent",
                now=T0 + 1 + n,
            )
    (hit,) = await search.messages("alice", "report")
    assert hit["message"]["id"] == mine
    assert bodies(await search.messages("alice", "report", until=T0 + 1)) == ["the old report"]
    found = await search.messages("bob", "report", limit=MAX_RESULTS)
    assert len(found) == MAX_RESULTS
    assert all(h["message"]["conversation"] == "carol" for h in found)


@pytest.mark.parametrize("names", [("al", "alice", "alice_2", "alice-2"), ("é", "e", "E"), ("bob", "bobs")])
async def test_owners_whose_names_share_words_or_stems_stay_apart(
    search: SearchService, node_db: Database, names: tuple[str, ...]
) -> None:
    for n, name in enumerate(names, start=1):
        await store(node_db, name, "zed", f"agenda for {name}", T0 + n, n)
    for name in names:
        assert bodies(await search.messages(name, "agenda")) == [f"agenda for {name}"]


async def test_the_index_matches_only_the_askers_rows(search: SearchService, node_db: Database) -> None:
    """What keeps a search fast on a node of many users: FTS5 itself narrows the
    match to the asker's messages (bench/search.py measures it), rather than
    walking everyone's matches and filtering them after."""
    await store(node_db, "alice", "bob", "weekly report", T0, 1)
    for n in range(2, 30):
        await store(node_db, "bob", "carol", "weekly report", T0 + n, n)

    async def matches(expression: str) -> int:
        async with node_db.read() as conn:
            query = text("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH :m")
            return int((await conn.execute(query, {"m": expression})).scalar_one())

    assert await matches('"report"') == 29
    assert await matches(node_search.owned_match("alice", '"report"')) == 1
    assert await matches(node_search.owned_match("bob", '"weekly" "report"')) == 28
    # Typing someone's token finds nothing of theirs: only ever the asker's own messages.
    assert await search.messages("alice", node_search.owner_tag("bob")) == []


async def test_the_index_follows_deleted_and_changed_messages(
    search: SearchService, node_db: Database
) -> None:
    gone = await store(node_db, "alice", "bob", "draft contract", T0, 1)
    kept = await store(node_db, "alice", "bob", "final contract", T0 + 1, 2)
    async with node_db.write() as conn:
        await conn.execute(text("DELETE FROM messages WHERE id = :id"), {"id": gone})
        await conn.execute(text("UPDATE messages SET body = 'signed agreement' WHERE id = :id"), {"id": kept})
    assert await search.messages("alice", "contract") == []
    assert bodies(await search.messages("alice", "agreement")) == ["signed agreement"]
    assert await owner_counts(node_db) == {"alice": 1}
    async with node_db.write() as conn:  # a row moved to another owner moves in the index too
        await conn.execute(text("UPDATE messages SET owner = 'bob' WHERE id = :id"), {"id": kept})
    assert await owner_counts(node_db) == {"alice": 0, "bob": 1}
    assert await search.messages("alice", "agreement") == []
    assert bodies(await search.messages("bob", "agreement")) == ["signed agreement"]


async def owner_counts(db: Database) -> dict[str, int]:
    async with db.read() as conn:
        rows = await conn.execute(text("SELECT owner, messages FROM search_owners"))
        return {str(row.owner): int(row.messages) for row in rows.all()}


async def test_either_way_of_matching_the_owner_finds_the_same(
    search: SearchService, node_db: Database
) -> None:
    """An owner with a large share of the node's messages is filtered after the
    words match; one with a small share is part of the match. Same answers."""
    await store(node_db, "alice", "bob", "ship the release today", T0, 1)
    await store(node_db, "alice", "carol", "release notes attached", T0 + DAY, 2)
    await store(node_db, "bob", "alice", "the release is out", T0 + 2 * DAY, 3)
    expected = ["release notes attached", "ship the release today"]
    assert sorted(bodies(await search.messages("alice", "release"))) == expected  # alice: 2 of 3
    for n in range(4, 40):  # now alice holds 2 of 39
        await store(node_db, "dave", "erin", f"release {n}", T0 + 3 * DAY + n, n)
    assert (await owner_counts(node_db))["alice"] * node_search.OWNER_SHARE < 39
    assert sorted(bodies(await search.messages("alice", "release"))) == expected
    assert bodies(await search.messages("alice", "release", peer="carol")) == ["release notes attached"]
    assert bodies(await search.messages("alice", "release", until=T0 + DAY)) == ["ship the release today"]


def test_the_migration_reindexes_messages_stored_before_it(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite3"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS / "node"))
    config.set_main_option("sqlalchemy.url", sqlite_url(path, driver="pysqlite"))
    command.upgrade(config, "0008")  # a node as it was before the owner joined the index
    rows = [("alice", "bob", "the budget is ready"), ("bob", "alice", "budget? ready")]
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO messages (owner, peer, id, direction, sender, recipient, body, sent_at, stored_at,"
            " state, kind) VALUES (?, ?, ?, 'in', ?, ?, ?, 1, 1, 'read', 'text')",
            [(o, p, f"m{i}", p, o, body) for i, (o, p, body) in enumerate(rows)],
        )
    migrate(sqlite_url(path, driver="pysqlite"), "node")

    def owners_of(word: str, owner: str) -> list[str]:
        with sqlite3.connect(path) as conn:
            found = conn.execute(
                "SELECT m.owner FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid"
                " WHERE messages_fts MATCH ?",
                (node_search.owned_match(owner, f'"{word}"'),),
            )
            return [row[0] for row in found]

    assert owners_of("budget", "alice") == ["alice"]
    assert owners_of("ready", "bob") == ["bob"]
    with sqlite3.connect(path) as conn:  # the counts the search plans with, taken from the old rows
        assert sorted(conn.execute("SELECT owner, messages FROM search_owners")) == [("alice", 1), ("bob", 1)]
    with sqlite3.connect(path) as conn:  # the later migrations kept the index's triggers
        conn.execute(
            "INSERT INTO messages (owner, peer, id, direction, sender, recipient, body, sent_at, stored_at,"
            " state, kind) VALUES ('alice', 'bob', 'm9', 'in', 'bob', 'alice', 'forecast attached', 2, 2,"
            " 'read', 'text')"
        )
        conn.execute("UPDATE messages SET body = 'forecast revised' WHERE id = 'm9'")
    assert owners_of("revised", "alice") == ["alice"]
    assert owners_of("attached", "alice") == []
    command.downgrade(config, "0008")  # and back, should an operator need to
    with sqlite3.connect(path) as conn:
        assert conn.execute(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'budget'"
        ).fetchone() == (2,)


# --- people ------------------------------------------------------------------------------------


@pytest.fixture
async def people(node_db: Database) -> None:
    def user(name: str, display: str, title: str = "", department: str = "") -> KnownUser:
        return KnownUser(
            name, display, ME, "http://n.test", None, None, False, 0, title=title, department=department
        )

    async with node_db.write() as conn:
        await node_cache.put_users(
            conn,
            [
                user("alice", "Alice Archer", "Engineer", "Platform"),
                user("bob", "Bob Baker", "Designer", "Product"),
                user("bobby", "Roberta Stone", "Engineer", "Platform"),
                user("carol", "Carol King", "Accountant", "Finance"),
            ],
        )
        profile = {
            "username": "carol",
            "display_name": "Carol K.",
            "title": "Head of Finance",
            "department": "",
        }
        await node_social.put_profile(conn, StoredProfile("carol", json.dumps(profile), b"s" * 64, None, 0))


async def names(search: SearchService, query: str) -> list[str]:
    return [person["username"] for person in await search.people(query)]


async def test_people_are_found_by_name_title_and_department(search: SearchService, people: None) -> None:
    assert await names(search, "archer") == ["alice"]
    assert await names(search, "engineer") == ["alice", "bobby"]
    assert await names(search, "PLATFORM engineer") == ["alice", "bobby"]
    assert await names(search, "designer platform") == []


async def test_username_prefix_matches_rank_first(search: SearchService, people: None) -> None:
    # "bob" is in bob's and bobby's usernames; "Bob Baker" also by name. Prefix matches come first.
    assert await names(search, "bob") == ["bob", "bobby"]
    assert (await names(search, "b"))[:2] == ["bob", "bobby"]


async def test_a_cached_profile_overrides_the_directory_card(search: SearchService, people: None) -> None:
    (carol,) = await search.people("head of finance")
    assert carol == {
        "username": "carol",
        "display_name": "Carol K.",
        "title": "Head of Finance",
        "department": "Finance",  # empty in the profile: the directory's value stays
    }


async def test_empty_query_finds_nobody(search: SearchService, people: None) -> None:
    assert await search.people("") == []
    assert await search.people("   ") == []


async def test_people_results_are_limited(search: SearchService, people: None) -> None:
    assert len(await search.people("a", limit=2)) == 2
