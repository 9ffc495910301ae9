"""KeyedLocks: one lock per key while in use, none kept after (services/keyed_locks.py).

The fetch worker locks by blob id, which a peer chooses in every file message
it sends: a lock kept per id ever seen grew without bound."""

from __future__ import annotations

import asyncio

from flamechat.services.keyed_locks import KeyedLocks


async def test_holders_of_one_key_take_turns_and_nothing_is_kept_afterwards() -> None:
    locks = KeyedLocks()
    inside: list[str] = []
    overlap = False

    async def hold(key: str) -> None:
        nonlocal overlap
        async with locks.hold(key):
            overlap = overlap or key in inside
            inside.append(key)
            await asyncio.sleep(0)
            inside.remove(key)

    await asyncio.gather(*(hold(f"blob-{i % 3}") for i in range(30)))
    assert not overlap
    await asyncio.gather(*(hold(f"blob-{i}") for i in range(10_000)))
    assert len(locks) == 0
