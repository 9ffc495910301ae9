"""Presence learned on the node wins over an older answer of the directory
(DirectoryView): the user list asked for just before a peer pushed "bob went
offline", and cached just after it, must not show bob online again until the
next refresh. A real directory service in this process, gated; real storage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flamechat.services.directory import DirectoryService
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.storage.database import Database
from flamechat.storage.records import PresenceEntry
from tests.unit import directory_support
from tests.unit.directory_support import DIRECTORY_KEY, NODE_KEY, InProcessDirectory
from tests.unit.support import FakeClock

clock = directory_support.clock
directory_db_template = directory_support.directory_db_template
directory_service = directory_support.directory_service


class GatedDirectory(InProcessDirectory):
    """Answers the user list as it was when asked, but only once let go."""

    def __init__(self, service: DirectoryService, node_id: str) -> None:
        super().__init__(service, node_id)
        self.asked = asyncio.Event()
        self.go_on = asyncio.Event()

    async def list_users(self) -> dict[str, Any]:
        answer = await super().list_users()
        self.asked.set()
        await self.go_on.wait()
        return answer


@pytest.fixture
async def online_bob(directory_service: DirectoryService) -> DirectoryService:
    await directory_service.check_login(NODE_KEY.node_id, "bob", "bob-password")
    await directory_service.report_presence(NODE_KEY.node_id, [PresenceEntry("bob", "online", "", ())])
    return directory_service


async def cached_bob(view: DirectoryView) -> tuple[bool, str]:
    bob = next(u for u in await view.cached_users() if u.username == "bob")
    return bob.online, bob.status


async def test_a_list_asked_for_before_a_push_does_not_undo_it(
    online_bob: DirectoryService, node_db: Database, clock: FakeClock
) -> None:
    port = GatedDirectory(online_bob, NODE_KEY.node_id)
    view = DirectoryView(node_db, port, EventHub(), clock, pinned_key=DIRECTORY_KEY.public_key)
    port.go_on.set()
    await view.refresh()
    assert await cached_bob(view) == (True, "online")

    port.asked.clear()
    port.go_on.clear()
    late = asyncio.create_task(view.refresh())  # the directory's answer: bob online
    await asyncio.wait_for(port.asked.wait(), 5)
    await view.set_presence("bob", None)  # meanwhile his node says he went offline
    port.go_on.set()
    await asyncio.wait_for(late, 5)
    assert await cached_bob(view) == (False, "offline")

    # A list asked for after that is the directory's word again.
    await online_bob.report_presence(NODE_KEY.node_id, [PresenceEntry("bob", "busy", "", ())])
    await view.refresh()
    assert await cached_bob(view) == (True, "busy")
