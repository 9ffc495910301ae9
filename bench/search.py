"""Search latency over one million stored messages (issue: p95 under 50 ms).

Builds (once, cached under bench/out/) node databases holding 1,000,000
messages across 50 conversations each, with text drawn from a
Zipf-distributed vocabulary so that some words are very common and most are
rare: one where every message is alice's (a personal node), and one where
the messages are spread evenly over 200 users and alice owns 1 in 200 (a
shared node). Then times SearchService.messages — the code behind
GET /api/v1/search — for alice, for a mix of queries, next to the same
database answering a trivial query (the ceiling), and prints p50/p95/p99.

    python bench/search.py [--messages 1000000] [--rounds 200] [--owners 1 200]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sqlite3
import sys
import time
from pathlib import Path

from sqlalchemy import text

from flamechat.services.search import SearchService
from flamechat.storage.database import Database, migrate, sqlite_url

OUT = Path(__file__).parent / "out"
VOCABULARY = 20_000
PEERS = 50


def words(rng: random.Random) -> list[str]:
    # Pronounceable pseudo-words; word i is drawn with probability ~ 1/(i+1) (Zipf).
    syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "si", "po", "de", "ba", "fi", "go", "hu", "je", "vo"]
    vocab = set()
    while len(vocab) < VOCABULARY:
        vocab.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(vocab, key=lambda w: (len(w), w))


def owner_of(i: int, owners: int) -> str:
    """Message ``i``'s owner: alice, then the other users in turn."""
    k = i % owners
    return "alice" if k == 0 else f"user{k}"


def build(path: Path, count: int, owners: int = 1) -> list[str]:
    rng = random.Random(7)
    vocab = words(rng)
    if path.exists():
        migrate(sqlite_url(path, driver="pysqlite"), "node")  # built by an older schema: brought up to date
        return vocab
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    migrate(sqlite_url(tmp, driver="pysqlite"), "node")
    # Cumulative weights, computed once: rng.choices would add 20,000 weights up per message.
    cum_weights = list(itertools.accumulate(1 / (i + 1) for i in range(len(vocab))))
    conn = sqlite3.connect(tmp)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # building the fixture only
    start = time.perf_counter()
    now = 1_700_000_000_000
    batch = 20_000
    for offset in range(0, count, batch):
        rows = []
        for i in range(offset, min(count, offset + batch)):
            body = " ".join(rng.choices(vocab, cum_weights=cum_weights, k=rng.randint(4, 30)))
            owner = owner_of(i, owners)
            peer = f"peer{(i // owners) % PEERS}"
            rows.append(
                (
                    owner,
                    peer,
                    f"m{i:010d}",
                    "in",
                    peer,
                    owner,
                    body,
                    now + i * 1000,
                    now + i * 1000,
                    "read",
                )
            )
        conn.executemany(
            "INSERT INTO messages (owner, peer, id, direction, sender, recipient, body,"
            " sent_at, stored_at, state) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.commit()
        print(
            f"\r  building: {offset + len(rows):>9,} messages, {time.perf_counter() - start:5.0f} s",
            end="",
            file=sys.stderr,
        )
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")
    conn.commit()
    conn.close()
    tmp.rename(path)
    print(file=sys.stderr)
    return vocab


def line(name: str, samples: list[float]) -> str:
    return (
        f"{name:<24} p50 {percentile(samples, 0.5):7.2f} ms  p95 {percentile(samples, 0.95):7.2f} ms"
        f"  p99 {percentile(samples, 0.99):7.2f} ms"
    )


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


class _NoDirectory:
    async def cached_users(self) -> list[object]:
        return []


async def measure(path: Path, vocab: list[str], rounds: int) -> int:
    """Print the latencies of alice's searches (and the ceiling) over ``path``;
    return how many results they found (all of them alice's, or it raises)."""
    db = Database(sqlite_url(path))
    search = SearchService(db, _NoDirectory(), None)  # type: ignore[arg-type]
    rng = random.Random(11)
    common, mid, rare = vocab[:20], vocab[200:2000], vocab[5000:]
    kinds = {
        "rare word": lambda: rng.choice(rare),
        "mid word": lambda: rng.choice(mid),
        "common word": lambda: rng.choice(common),
        "two words": lambda: f"{rng.choice(mid)} {rng.choice(mid)}",
        "rare + common": lambda: f"{rng.choice(rare)} {rng.choice(common)}",
        "word + person": lambda: rng.choice(mid),
    }

    async def ceiling() -> None:
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))

    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        await ceiling()
        samples.append((time.perf_counter() - t) * 1000)
    print(line("trivial query (ceiling)", samples))
    everything = []
    found = 0
    for name, make in kinds.items():
        samples = []
        for _ in range(rounds):
            query = make()
            peer = f"peer{rng.randrange(PEERS)}" if name == "word + person" else None
            t = time.perf_counter()
            hits = await search.messages("alice", query, peer=peer, limit=20)
            samples.append((time.perf_counter() - t) * 1000)
            found += len(hits)
            if any(hit["message"]["recipient"] != "alice" for hit in hits):
                raise AssertionError(f"{query!r} found another user's messages")
        everything += samples
        print(line(name, samples))
    print(line("all queries", everything))
    await db.close()
    return found


def run(out: Path, messages: int, rounds: int, owners: list[int]) -> dict[int, int]:
    """Build (or reuse) one database per owner count and measure it; the results found, per count."""
    found = {}
    for count in owners:
        path = out / f"search-{messages}-{count}owners.sqlite3"
        vocab = build(path, messages, count)
        whose = (
            "all alice's" if count == 1 else f"spread over {count} users, alice owns {messages // count:,}"
        )
        print(f"\nsearch over {messages:,} messages ({whose}), {rounds} queries per kind", flush=True)
        found[count] = asyncio.run(measure(path, vocab, rounds))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--owners", type=int, nargs="+", default=[1, 200], help="one database per count")
    args = parser.parse_args()
    run(OUT, args.messages, args.rounds, args.owners)


if __name__ == "__main__":
    main()
