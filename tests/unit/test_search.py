"""Search (services/search.py) over a real node database: FTS5 for messages,
the directory cache and cached profiles for people."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.profiles import ProfileService
from flamechat.services.search import MAX_RESULTS, SearchService
from flamechat.storage import node_cache, node_messages, node_search, node_social
from flamechat.storage.database import Database
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
