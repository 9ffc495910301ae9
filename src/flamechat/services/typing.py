"""'Someone is typing': shown live to the person written to, never stored.

A notice is an envelope of kind ``typing`` with an empty body, sealed and
signed like a message (so only the recipient's node can open it, and it
cannot be forged for another user), but sent straight to the recipient's
node (``PUT /federation/v1/typing/{id}``) with a short timeout: no outbox,
no retry, no relay. A lost notice costs nothing; a late one is worse than
none, so one older than ``FRESH_MS`` is dropped on arrival.

Nothing is sent by someone who appears offline (it would tell that they are
there), to someone they block, or to someone without keys yet; the
recipient's node drops what comes from someone they block, as it does their
messages. Each side bounds the rate: a sender sends at most one notice per
conversation every ``EVERY_MS``, a receiver shows at most one per pair per
``SHOW_EVERY_MS``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from flamechat.crypto import seal_envelope
from flamechat.protocol import errors
from flamechat.protocol.ids import new_id
from flamechat.protocol.versions import TYPING_FEATURE
from flamechat.services.blocks import BlockService
from flamechat.services.clock import Clock, ms
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.ports import PeerPort, TransportError
from flamechat.services.presence import PresenceService
from flamechat.services.receiving import ReceivingService
from flamechat.services.waiting import has_keys

log = logging.getLogger(__name__)

KIND = "typing"
EVERY_MS = 1_000  # a page asks every 3 s while typing (and once more after a send); the node's bound
SHOW_EVERY_MS = 1_000
SHOWN_MS = 6_000  # how long a page shows one notice (a new one starts it again)
FRESH_MS = 15_000  # older (or as far in the future, a skewed clock): dropped
IN_FLIGHT = 64  # notices on their way at once; beyond that, new ones are not sent
MEMORY = 10_000  # (sender, recipient) pairs remembered for the rate bounds


class TypingService:
    def __init__(
        self,
        directory: DirectoryView,
        keyring: KeyRing,
        events: EventHub,
        blocks: BlockService,
        presence: PresenceService,
        receiving: ReceivingService,
        peers: PeerPort,
        clock: Clock,
        *,
        node_id: str,
    ) -> None:
        self.directory = directory
        self.keyring = keyring
        self.events = events
        self.blocks = blocks
        self.presence = presence
        self.receiving = receiving
        self.peers = peers
        self.clock = clock
        self.node_id = node_id
        self._sent: dict[tuple[str, str], int] = {}
        self._shown: dict[tuple[str, str], int] = {}
        self._pushes: set[asyncio.Task[None]] = set()

    @staticmethod
    def _due(memory: dict[tuple[str, str], int], pair: tuple[str, str], now: int, every: int) -> bool:
        if now - memory.get(pair, -every) < every:
            return False
        if len(memory) >= MEMORY:
            memory.clear()  # bounded; forgetting only lets one extra notice through
        memory[pair] = now
        return True

    async def typing(self, username: str, peer: str) -> bool:
        """``username`` is typing to ``peer``: tell ``peer``. ``False`` when nothing was
        sent (too soon after the last, appearing offline, blocked, no keys yet)."""
        recipient = await self.directory.resolve(peer)  # UnknownUser: 404, as for a message
        keys = self.keyring.require(username)
        now = ms(self.clock)
        if peer == username or not has_keys(recipient) or await self.blocks.is_blocked(username, peer):
            return False
        if (await self.presence.status_of(username)).status == "invisible":
            return False
        local = recipient.home_node == self.node_id
        if not local and (len(self._pushes) >= IN_FLIGHT or not recipient.node_url):
            return False
        if not self._due(self._sent, (username, peer), now, EVERY_MS):
            return False
        if local:
            if not await self.blocks.drops(peer, username):
                self._show(username, peer, now)
            return True
        assert recipient.node_url is not None
        assert recipient.box_key is not None  # has_keys
        envelope = seal_envelope(
            sender_keys=keys,
            sender=username,
            recipient=peer,
            recipient_box_key=recipient.box_key,
            envelope_id=new_id(),
            sent_at=now,
            kind=KIND,
            body={},
        )
        push = asyncio.get_running_loop().create_task(self._push(recipient.node_url, envelope.to_wire()))
        self._pushes.add(push)
        push.add_done_callback(self._pushes.discard)
        return True

    async def _push(self, node_url: str, wire: dict[str, Any]) -> None:
        try:
            if TYPING_FEATURE in await self.peers.features(node_url):
                await self.peers.typing(node_url, wire)
        except TransportError as exc:
            log.debug("typing notice to %s not sent: %s", node_url, exc)
        except Exception:  # a hint, on a task no one awaits: said in the log, never raised
            log.exception("typing notice to %s failed", node_url)

    async def receive(self, from_node: str, wire: dict[str, Any]) -> None:
        """A notice from a peer node: checked as a message is, then shown, or dropped
        without a word (blocked, stale, recipient not signed in)."""
        opened = await self.receiving.open_live(from_node, wire)
        if opened is None:
            return
        if opened.kind != KIND:
            raise errors.EnvelopeRejected("only typing notices are accepted here")
        now = ms(self.clock)
        if abs(now - opened.sent_at) > FRESH_MS:
            return
        self._show(opened.sender, opened.recipient, now)

    def _show(self, sender: str, recipient: str, now: int) -> None:
        if self._due(self._shown, (sender, recipient), now, SHOW_EVERY_MS):
            self.events.publish(recipient, {"type": "typing", "username": sender, "for_ms": SHOWN_MS})

    async def close(self) -> None:
        """Let the notices on their way finish or fail (each has a short timeout)."""
        if self._pushes:
            await asyncio.gather(*self._pushes, return_exceptions=True)
