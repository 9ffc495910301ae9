"""Presence: who on this node has a tab open, told to local tabs and the directory."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from flamechat.protocol import errors
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.ports import DirectoryPort, TransportError

log = logging.getLogger(__name__)


class PresenceService:
    def __init__(
        self, events: EventHub, directory: DirectoryView, port: DirectoryPort, *, interval: float
    ) -> None:
        self.events = events
        self.directory = directory
        self.port = port
        self.interval = interval
        self._changed = asyncio.Event()
        events.on_presence_change(self._local_change)

    def _local_change(self, username: str, online: bool) -> None:
        self.events.broadcast({"type": "presence", "username": username, "online": online})
        self._changed.set()

    def online(self) -> list[str]:
        return sorted(self.events.connected())

    async def report(self) -> bool:
        try:
            await self.port.report_presence(self.online())
        except TransportError as exc:
            log.debug("presence report failed: %s", exc)
            return False
        return True

    async def run(self) -> None:
        """Report now, on every change, and every ``interval`` seconds; refresh the list."""
        while True:
            self._changed.clear()
            for username in self.online():
                await self.directory.set_online(username, True)
            await self.report()
            try:
                await self.directory.refresh()
            except errors.FlameError as exc:
                log.debug("user list refresh failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=self.interval)
