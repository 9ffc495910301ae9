"""A node's view of the directory: live and verified when reachable, cached when not.

Every answer is checked against the directory's pinned key before it is
trusted or cached, so the cache is as trustworthy as a live answer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from flamechat.crypto import SignatureError, b64decode, b64encode, verify_document
from flamechat.crypto.errors import MalformedError
from flamechat.protocol import errors
from flamechat.services.clock import Clock, ms
from flamechat.services.directory import (
    LOGIN_APPROVAL_MS,
    LOGIN_PURPOSE,
    NODE_PURPOSE,
    NODES_PURPOSE,
    USER_PURPOSE,
    USERS_PURPOSE,
)
from flamechat.services.events import EventHub
from flamechat.services.ports import DirectoryPort, TransportError
from flamechat.services.ratelimit import TokenBucket
from flamechat.storage import node_cache, node_keys
from flamechat.storage.database import Database
from flamechat.storage.records import KeyWarning, KnownNode, KnownUser, PresenceEntry

log = logging.getLogger(__name__)
T = TypeVar("T")

DIRECTORY_KEY_FACT = "directory_public_key"

_CODES: dict[str, type[errors.FlameError]] = {
    "invalid_credentials": errors.InvalidCredentials,
    "wrong_home_node": errors.WrongHomeNode,
    "unknown_user": errors.UnknownUser,
    "forbidden": errors.Forbidden,
    "invalid_request": errors.InvalidRequest,
    "not_found": errors.NotFound,  # no such node
}


MEMO_SECONDS = 5.0
MEMO_SIZE = 10_000
# Lookups of nodes not in the cache, a second. Anyone can send a request naming a
# node id the node has never seen (the key is needed before the signature can be
# checked), and the directory counts every lookup against this node's own rate:
# without a bound, strangers could spend it all and leave the node's users
# without a directory. Real new peers are rare, and asked about once.
NODE_LOOKUPS_PER_SECOND = 10.0
# The same for users no one here has heard of, looked up because a peer named them
# (an envelope's sender or recipient): a peer's batch of 100 envelopes with 100
# made-up senders was 100 lookups. Per peer, and for all peers together.
PEER_USER_LOOKUPS_PER_SECOND = 10.0
PEER_USER_LOOKUP_BURST = 30.0
USER_LOOKUPS_PER_SECOND = 25.0
USER_LOOKUP_BURST = 100.0


class DirectoryBusy(errors.RateLimited, errors.DirectoryUnavailable):
    """The directory answered 429: it is up, and asks this node to wait.

    Whoever asked is answered 429 with ``retry_after`` (it is a RateLimited), and
    every caller that falls back on the cache or retries later while the directory
    is down does so now too (it is a DirectoryUnavailable), but the directory is
    not taken for down: no breaker, no "offline" banner, no reachability change."""


class DirectoryView:
    def __init__(
        self,
        db: Database,
        port: DirectoryPort,
        events: EventHub,
        clock: Clock,
        *,
        pinned_key: bytes | None = None,
        breaker: float = 3.0,
        fresh_for: float = 60.0,
        list_max_age: float = 2.0,
        node_lookups_per_second: float = NODE_LOOKUPS_PER_SECOND,
    ) -> None:
        self.db = db
        self.port = port
        self.events = events
        self.clock = clock
        self._key = pinned_key
        self.reachable: bool | None = None
        self.last_list_at: int | None = None
        self.breaker = breaker
        self.fresh_for = fresh_for
        self.list_max_age = list_max_age
        self._down_until = 0.0
        self._busy_until = 0.0  # the directory asked this node to wait (429) until then
        self._relays_at = float("-inf")
        # The rows of the node's cache read in the last few seconds: every
        # message sent or received resolves its peer and every federation request
        # its node. This view is the only writer of those rows and keeps both up
        # to date; the time bound covers the operator's CLI editing the database.
        self._users: dict[str, tuple[float, KnownUser]] = {}
        self._warnings: dict[str, dict[str, KeyWarning]] = {}  # per viewer; changed only here
        self._warnings_changes = 0  # a read that saw an older state is not remembered
        self._nodes: dict[str, tuple[float, KnownNode]] = {}
        self._node_lookups = TokenBucket(clock, rate=node_lookups_per_second, burst=node_lookups_per_second)
        self._user_lookups = TokenBucket(clock, rate=USER_LOOKUPS_PER_SECOND, burst=USER_LOOKUP_BURST)
        self._user_lookups_by_peer: dict[str, TokenBucket] = {}
        # Presence learned another way (a local tab, a peer's push) is newer than a
        # directory answer to a question asked before it: such an answer, cached
        # after it, keeps that user's presence as learned. Counted, not timed.
        self._presence_changes = 0
        self._presence_learned: dict[str, int] = {}  # username -> count when learned

    # --- reachability and the directory key ---------------------------------------

    def _set_reachable(self, reachable: bool) -> None:
        if reachable != self.reachable:
            self.reachable = reachable
            log.info("directory is %s", "reachable" if reachable else "unreachable")
            self.events.broadcast({"type": "directory", "status": "online" if reachable else "offline"})

    async def _call(self, call: Callable[[], Awaitable[T]], *, probe: bool = False, login: bool = False) -> T:
        """Run a directory call; track reachability; map refusals to our errors.

        After a failure the directory is not asked again for ``breaker``
        seconds (unless ``probe``), so a hanging directory costs one timeout,
        not one per message. After a 429 it is not asked again until its
        Retry-After has passed (:class:`DirectoryBusy` meanwhile), except for
        password checks (``login``), whose 429 may be about one account only.
        """
        now = self.clock.now()
        if not probe and now < self._down_until:
            raise errors.DirectoryUnavailable("directory unreachable (recent failure)")
        if not login and now < self._busy_until:
            raise DirectoryBusy(
                "the directory asked this node to wait", retry_after=max(1, math.ceil(self._busy_until - now))
            )
        try:
            result = await call()
        except TransportError as exc:
            if exc.status == 429:  # busy with this caller, not down: no breaker, no "offline" banner
                self._set_reachable(True)
                retry = exc.peer_details.get("retry_after")
                wait = min(3600, max(1, int(retry))) if isinstance(retry, int | float) else 1
                if not login:
                    self._busy_until = self.clock.now() + wait
                raise DirectoryBusy(
                    exc.peer_message or "the directory asks to slow down", retry_after=wait
                ) from exc
            if exc.transient:
                self._down_until = self.clock.now() + self.breaker
                self._set_reachable(False)
                raise errors.DirectoryUnavailable(f"directory unreachable: {exc}") from exc
            self._set_reachable(True)
            error = _CODES.get(exc.code or "", errors.ServiceUnavailable)
            details: dict[str, Any] = {}
            home = exc.peer_details.get("home_url")
            if (
                error is errors.WrongHomeNode
                and isinstance(home, str)
                and home.startswith(("http://", "https://"))
            ):
                details["home_url"] = home[:2048]  # where the login page sends the user
            raise error(exc.peer_message or "the directory refused the request", **details) from exc
        self._down_until = 0.0
        self._set_reachable(True)
        return result

    async def directory_key(self) -> bytes:
        """The pinned key: configured, remembered, or learned on first contact (TOFU)."""
        if self._key is not None:
            return self._key
        async with self.db.read() as conn:
            stored = await node_cache.get_fact(conn, DIRECTORY_KEY_FACT)
        if stored is None:
            answer = await self._call(self.port.fetch_key)
            stored = str(answer["public_key"])
            async with self.db.write() as conn:
                await node_cache.set_fact(conn, DIRECTORY_KEY_FACT, stored)
        self._key = b64decode(stored, size=32, what="directory key")
        return self._key

    async def _verified(self, purpose: str, answer: dict[str, Any]) -> dict[str, Any]:
        key = await self.directory_key()
        doc = {k: v for k, v in answer.items() if k != "signature"}
        try:
            verify_document(key, purpose, doc, b64decode(answer.get("signature", ""), size=64))
        except (SignatureError, MalformedError) as exc:
            raise errors.ServiceUnavailable("directory answer failed its signature check") from exc
        return doc

    # --- nodes -----------------------------------------------------------------------

    async def register(self, url: str, public_key: bytes, *, relay: bool) -> None:
        await self._call(lambda: self.port.register_node(url, b64encode(public_key), relay), probe=True)

    async def report_presence(self, entries: list[PresenceEntry]) -> None:
        body = [
            {
                "username": e.username,
                "status": e.status,
                "status_text": e.status_text,
                "hidden_from": list(e.hidden_from),
            }
            for e in entries
        ]
        await self._call(lambda: self.port.report_presence(body), probe=True)

    async def set_card(self, username: str, card: dict[str, str]) -> None:
        asked = self._presence_changes
        answer = await self._call(lambda: self.port.set_card(username, card))
        user = self._known((await self._verified(USER_PURPOSE, answer))["user"], ms(self.clock))
        await self._cache([user], asked=asked)

    async def relays(self, *, max_age: float | None = None) -> list[KnownNode]:
        """Nodes that offer relaying: the directory's signed list (refreshed once it
        is ``max_age`` seconds old, by default ``fresh_for``), else the cache."""
        max_age = self.fresh_for if max_age is None else max_age
        try:
            if self.clock.now() - self._relays_at < max_age:
                raise errors.DirectoryUnavailable("relay list is fresh enough")
            answer = await self._verified(NODES_PURPOSE, await self._call(self.port.list_nodes))
        except (errors.DirectoryUnavailable, errors.ServiceUnavailable):
            pass
        else:
            self._relays_at = self.clock.now()
            now = ms(self.clock)
            async with self.db.write() as conn:
                for record in answer["nodes"]:
                    node = KnownNode(
                        record["node_id"],
                        record["url"],
                        b64decode(record["public_key"], size=32),
                        bool(record.get("relay")),
                    )
                    await node_cache.put_node(conn, node, now)
        async with self.db.read() as conn:
            return [n for n in await node_cache.list_nodes(conn) if n.relay]

    async def node(self, node_id: str) -> KnownNode | None:
        """A node's URL and key, from cache or a signed directory answer; ``None``
        if the directory says there is no such node.

        Raises DirectoryUnavailable (or ServiceUnavailable) when it cannot tell:
        the directory is unreachable, busy or its answer fails its signature, or
        this node already asked about ``NODE_LOOKUPS_PER_SECOND`` unknown nodes in
        the last second. A caller answers that with a 503 its peer retries, not
        with a refusal that would fail a genuine new peer's messages for good."""
        now = self.clock.now()
        memo = self._nodes.get(node_id)
        if memo is not None and now - memo[0] < MEMO_SECONDS:
            return memo[1]
        async with self.db.read() as conn:
            cached = await node_cache.get_node(conn, node_id)
        if cached is not None:
            self._remember(self._nodes, node_id, (now, cached))
            return cached
        if not self._node_lookups.take():
            raise errors.DirectoryUnavailable(
                f"node {node_id} is not known here, and too many unknown nodes were looked up "
                "in the last second; try again shortly",
                retry_after=1,
            )
        try:
            answer = await self._verified(NODE_PURPOSE, await self._call(lambda: self.port.get_node(node_id)))
        except errors.NotFound:
            return None
        record = answer["node"]
        node = KnownNode(
            record["node_id"],
            record["url"],
            b64decode(record["public_key"], size=32),
            bool(record.get("relay")),
        )
        if node.node_id != node_id:
            return None
        async with self.db.write() as conn:
            await node_cache.put_node(conn, node, ms(self.clock))
        self._remember(self._nodes, node_id, (self.clock.now(), node))
        return node

    # --- users -------------------------------------------------------------------------

    def _known(self, record: dict[str, Any], fetched_at: int) -> KnownUser:
        def key(name: str) -> bytes | None:
            value = record.get(name)
            return None if value is None else b64decode(value, size=32, what=name)

        return KnownUser(
            username=record["username"],
            display_name=record["display_name"],
            home_node=record.get("home_node"),
            node_url=record.get("node_url"),
            sign_key=key("sign_key"),
            box_key=key("box_key"),
            online=bool(record.get("online")),
            fetched_at=fetched_at,
            status=str(record.get("status") or ("online" if record.get("online") else "offline")),
            status_text=str(record.get("status_text") or ""),
            title=str(record.get("title") or ""),
            department=str(record.get("department") or ""),
            hidden_from=tuple(record.get("hidden_from") or ()),
        )

    async def check_login(self, username: str, password: str, *, node_id: str) -> KnownUser:
        """The directory's approval of ``password`` for ``username``, asked by this node
        (``node_id``): signed as a login approval, for this node, this user, and recently."""
        asked = self._presence_changes
        answer = await self._call(lambda: self.port.check_login(username, password), login=True)
        doc = await self._verified(LOGIN_PURPOSE, answer)
        issued_at = doc.get("issued_at")
        if (
            doc.get("node_id") != node_id
            or not isinstance(doc.get("user"), dict)
            or doc["user"].get("username") != username
            or not isinstance(issued_at, int)
            or abs(ms(self.clock) - issued_at) > LOGIN_APPROVAL_MS
        ):
            raise errors.ServiceUnavailable("the directory's login approval is not for this login")
        user = self._known(doc["user"], ms(self.clock))
        await self._cache([user], asked=asked)
        return user

    async def publish_keys(self, username: str, body: dict[str, Any]) -> KnownUser:
        asked = self._presence_changes
        doc = await self._verified(
            USER_PURPOSE, await self._call(lambda: self.port.publish_keys(username, body))
        )
        user = self._known(doc["user"], ms(self.clock))
        await self._cache([user], asked=asked)
        return user

    async def resolve(
        self, username: str, *, max_age: float | None = None, for_peer: str | None = None
    ) -> KnownUser:
        """A user's record, from the cache if younger than ``max_age`` seconds
        (default: ``fresh_for``; ``0`` always asks the directory first), else from
        the directory; the cache, of any age, when the directory is unreachable.

        ``for_peer``: the node whose request names ``username``. The directory is
        asked for it only within its budget (and all peers'); past it the cache
        answers, of any age, as during an outage, and a user not in the cache is
        DirectoryUnavailable (a 503 the peer retries): a peer cannot spend this
        node's directory rate by naming made-up users, or real ones over and over.
        """
        max_age = self.fresh_for if max_age is None else max_age
        cached = await self._cached_user(username)
        complete = cached is not None and cached.sign_key is not None and cached.node_url is not None
        if cached is not None and complete and ms(self.clock) - cached.fetched_at <= max_age * 1000:
            return cached
        if for_peer is not None and not self._may_look_up_for(for_peer):
            if cached is not None:
                return cached
            raise errors.DirectoryUnavailable(
                f"{username!r} is not known here, and too many users were looked up "
                "for your node in the last second; try again shortly",
                retry_after=1,
            )
        asked = self._presence_changes
        try:
            answer = await self._call(lambda: self.port.get_user(username))
        except errors.DirectoryUnavailable:
            if cached is None:
                raise errors.DirectoryUnavailable(
                    f"the directory is unreachable and {username!r} is not in this node's cache"
                ) from None
            return cached
        user = self._known((await self._verified(USER_PURPOSE, answer))["user"], ms(self.clock))
        await self._cache([user], asked=asked)
        return user

    def _may_look_up_for(self, peer: str) -> bool:
        bucket = self._user_lookups_by_peer.get(peer)
        if bucket is None:
            bucket = TokenBucket(self.clock, rate=PEER_USER_LOOKUPS_PER_SECOND, burst=PEER_USER_LOOKUP_BURST)
            self._remember(self._user_lookups_by_peer, peer, bucket)  # bounded; peers are signed, so few
        return bucket.take() and self._user_lookups.take()

    async def refresh(self) -> list[KnownUser]:
        """Fetch the whole user list; announce presence changes to local tabs."""
        asked = self._presence_changes
        answer = await self._call(self.port.list_users, probe=True)
        doc = await self._verified(USERS_PURPOSE, answer)
        now = ms(self.clock)
        users = [self._known(record, now) for record in doc["users"]]
        await self._cache(users, asked=asked)
        self.last_list_at = now
        return users

    async def users(self) -> list[KnownUser]:
        """The user list, fetched again only if the last fetch is older than ``list_max_age`` s.

        Every page load asks for the list, and the presence loop refreshes it
        anyway: a busy node answers those from the cache it just wrote instead
        of asking the directory (and rewriting the cache) once per tab.
        """
        recent = (
            self.last_list_at is not None and ms(self.clock) - self.last_list_at < self.list_max_age * 1000
        )
        if recent and self.reachable is not False:  # once it is seen down, pages learn so at once
            return await self.cached_users()
        return await self.refresh()

    async def cached_users(self) -> list[KnownUser]:
        async with self.db.read() as conn:
            return await node_cache.list_users(conn)

    async def set_presence(self, username: str, entry: PresenceEntry | None) -> None:
        """Record presence learned some other way (a local tab, a peer node);
        ``None`` means offline."""
        self._presence_changes += 1
        self._remember(self._presence_learned, username, self._presence_changes)
        async with self.db.read() as conn:
            user = await node_cache.get_user(conn, username)
        if user is None:
            return
        if entry is None:
            changed = replace(user, online=False, status="offline", status_text="", hidden_from=())
        else:
            changed = replace(
                user,
                online=True,
                status=entry.status,
                status_text=entry.status_text,
                hidden_from=tuple(sorted(entry.hidden_from)),
            )
        if changed != user:
            await self._cache([changed])

    async def _cached_user(self, username: str) -> KnownUser | None:
        now = self.clock.now()
        memo = self._users.get(username)
        if memo is not None and now - memo[0] < MEMO_SECONDS:
            return memo[1]
        async with self.db.read() as conn:
            cached = await node_cache.get_user(conn, username)
        if cached is not None:
            self._remember(self._users, username, (now, cached))
        return cached

    @staticmethod
    def _remember(memo: dict[str, Any], key: str, value: Any) -> None:
        if len(memo) >= MEMO_SIZE:
            memo.clear()  # bounded; it refills from the database
        memo[key] = value

    async def _cache(self, users: list[KnownUser], *, asked: int | None = None) -> None:
        """Write ``users`` to the cache. ``asked``: they are the directory's answer to a
        question asked when ``_presence_changes`` was that: presence learned since is kept."""
        warned: dict[str, list[str]] = {}
        async with self.db.write() as conn:
            known = await node_cache.get_users(conn, (u.username for u in users))
            if asked is not None:
                newer = {u.username: u for u in known if self._presence_learned.get(u.username, 0) > asked}
                users = [_presence_of(newer[u.username], u) if u.username in newer else u for u in users]
            before = {u.username: _visible_state(u) for u in known}
            await node_cache.put_users(conn, users)
            pinned = await node_keys.pins(conn, [u.username for u in users])
            for username, keys, before_keys in keys_to_pin(pinned, users):
                await node_keys.pin(conn, username, keys, now=ms(self.clock))
                if before_keys is not None:
                    viewers = await node_keys.correspondents_of(conn, username)
                    await node_keys.warn(conn, viewers, username, before_keys[0], keys[0], now=ms(self.clock))
                    warned[username] = viewers
        now = self.clock.now()
        for user in users:
            self._remember(self._users, user.username, (now, user))
        for user in users:
            if before.get(user.username) != _visible_state(user):
                self.announce(user)
        if warned:
            self._warnings_changes += 1
        for viewers in warned.values():
            for viewer in viewers:
                self._warnings.pop(viewer, None)
        for username, viewers in warned.items():
            log.warning(
                "the directory now serves other keys for %s; %d local users must confirm",
                username,
                len(viewers),
            )
            for viewer in viewers:
                self.events.publish(viewer, {"type": "keys_changed", "username": username})

    async def key_warnings(self, viewer: str) -> dict[str, KeyWarning]:
        """The users whose keys changed since ``viewer`` last wrote with them, unconfirmed."""
        cached = self._warnings.get(viewer)
        if cached is None:
            changes = self._warnings_changes
            async with self.db.read() as conn:
                cached = await node_keys.warnings_for(conn, viewer)
            if changes == self._warnings_changes:
                self._remember(self._warnings, viewer, cached)
        return cached

    async def verified(self, viewer: str) -> set[str]:
        """The users ``viewer`` verified whose keys are still the ones verified."""
        async with self.db.read() as conn:
            marked = await node_keys.verified_for(conn, viewer)
            current = await node_keys.pins(conn, list(marked))
        return {username for username, keys in marked.items() if current.get(username) == keys}

    async def mark_verified(self, viewer: str, username: str, keys: node_keys.Keys | None) -> None:
        """``viewer`` compared safety numbers with ``username`` over ``keys``, or
        (``None``) takes that back. Verifying also confirms a change of those
        keys: the comparison is exactly the check a key change asks for."""
        async with self.db.write() as conn:
            if keys is None:
                await node_keys.unmark_verified(conn, viewer, username)
                return
            await node_keys.mark_verified(conn, viewer, username, keys, now=ms(self.clock))
            await node_keys.confirm(conn, viewer, username)
        self._warnings_changes += 1
        self._warnings.pop(viewer, None)

    async def confirm_keys(self, viewer: str, username: str) -> None:
        """``viewer`` has checked ``username``'s new keys (in person, by phone): writing resumes."""
        async with self.db.write() as conn:
            confirmed = await node_keys.confirm(conn, viewer, username)
        self._warnings_changes += 1
        self._warnings.pop(viewer, None)
        if not confirmed:
            raise errors.NotFound(f"there is no key change of {username} to confirm", field="username")

    def announce(self, user: KnownUser) -> None:
        """Tell every connected local viewer how ``user`` now looks to them."""
        for viewer in self.events.connected():
            if viewer != user.username:
                self.events.publish(viewer, {"type": "presence", **shown_presence(user, viewer)})


def keys_to_pin(
    pinned: dict[str, node_keys.Keys], fresh: list[KnownUser]
) -> list[tuple[str, node_keys.Keys, node_keys.Keys | None]]:
    """(username, served keys, pinned keys) for every user whose served keys differ
    from their pin; the pin is None the first time a user's keys are seen, which
    is no change.

    An answer without keys changes no pin: a directory cannot clear a pin and
    then serve keys of its own as if for the first time.
    """
    found: list[tuple[str, node_keys.Keys, node_keys.Keys | None]] = []
    for user in fresh:
        if user.sign_key is None or user.box_key is None:
            continue
        keys = (user.sign_key, user.box_key)
        before = pinned.get(user.username)
        if before != keys:
            found.append((user.username, keys, before))
    return found


def _presence_of(source: KnownUser, user: KnownUser) -> KnownUser:
    """``user`` with the presence of ``source``."""
    return replace(
        user,
        online=source.online,
        status=source.status,
        status_text=source.status_text,
        hidden_from=source.hidden_from,
    )


def _visible_state(user: KnownUser) -> tuple[object, ...]:
    return (user.online, user.status, user.status_text, user.hidden_from, user.display_name)


def shown_presence(user: KnownUser, viewer: str) -> dict[str, object]:
    """What ``viewer`` may see of ``user``: nothing but "offline" if blocked."""
    hidden = viewer in user.hidden_from
    online = user.online and not hidden
    return {
        "username": user.username,
        "display_name": user.display_name,
        "online": online,
        "status": user.status if online else "offline",
        "status_text": user.status_text if online else "",
    }
