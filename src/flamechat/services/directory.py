"""The directory's rules: accounts, nodes, published keys, presence.

Every answer about users is signed with the directory's key so nodes can
cache it and trust the cache later.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from argon2 import PasswordHasher

from flamechat.crypto import (
    NodeKey,
    SignatureError,
    b64decode,
    b64encode,
    node_id_from_public_key,
    sign_document,
    verify_document,
)
from flamechat.crypto.errors import MalformedError
from flamechat.protocol import errors
from flamechat.protocol.ids import is_username
from flamechat.services.clock import Clock, ms
from flamechat.services.login_checks import LoginChecks
from flamechat.services.passwords import verify_password
from flamechat.storage import directory_store as store
from flamechat.storage.database import Database
from flamechat.storage.records import DirectoryAccount, DirectoryNode, PresenceEntry

NODES_PURPOSE = "directory-nodes"
USER_PURPOSE = "directory-user"
USERS_PURPOSE = "directory-users"
NODE_PURPOSE = "directory-node"
LOGIN_PURPOSE = "directory-login"
LOGIN_APPROVAL_MS = 60_000  # how long a node accepts a login approval after it was issued
KEY_BINDING_PURPOSE = "user-key-binding"
MIN_PASSWORD_LENGTH = 8


def key_binding(username: str, sign_key: str, box_key: str) -> dict[str, str]:
    """The document a user signs to bind their box key to their signing key."""
    return {"username": username, "sign_key": sign_key, "box_key": box_key}


class DirectoryService:
    def __init__(
        self,
        db: Database,
        key: NodeKey,
        hasher: PasswordHasher,
        clock: Clock,
        *,
        presence_ttl: float = 30.0,
        open_registration: bool = True,
        login_checks: LoginChecks | None = None,
    ) -> None:
        self.db = db
        self.key = key
        self.hasher = hasher
        self.clock = clock
        self.presence_ttl = presence_ttl
        self.open_registration = open_registration
        self.login_checks = login_checks or LoginChecks()
        self._dummy_hash = hasher.hash("not a real password")

    # --- administration (CLI) ------------------------------------------------------

    async def create_user(self, username: str, password: str, *, display_name: str | None = None) -> None:
        if not is_username(username):
            raise errors.InvalidRequest(
                "username: 2-32 of a-z 0-9 . _ -, starting with a letter", field="username"
            )
        _check_password(password)
        async with self.db.write() as conn:
            if await store.get_account(conn, username) is not None:
                raise errors.Conflict(f"user {username!r} already exists", field="username")
            await store.create_account(
                conn,
                username=username,
                display_name=display_name or username.capitalize(),
                password_hash=self.hasher.hash(password),
                home_node=None,
                now=ms(self.clock),
            )

    async def reset_password(self, username: str, password: str) -> None:
        _check_password(password)
        async with self.db.write() as conn:
            if await store.get_account(conn, username) is None:
                raise errors.UnknownUser(f"no user {username!r}")
            await store.update_account(
                conn, username, ms(self.clock), password_hash=self.hasher.hash(password)
            )

    async def accounts(self) -> list[DirectoryAccount]:
        async with self.db.read() as conn:
            return await store.list_accounts(conn)

    # --- nodes -------------------------------------------------------------------------

    async def register_node(
        self, node_id: str, url: str, public_key_b64: str, *, relay: bool = False
    ) -> dict[str, Any]:
        try:
            public_key = b64decode(public_key_b64, size=32, what="public_key")
        except MalformedError as exc:
            raise errors.InvalidRequest(str(exc), field="public_key") from exc
        if node_id_from_public_key(public_key) != node_id:
            raise errors.Forbidden("node id is not derived from this public key")
        async with self.db.write() as conn:
            existing = await store.get_node(conn, node_id)
            if existing is None and not self.open_registration:
                raise errors.Forbidden("node registration is closed on this directory")
            node = DirectoryNode(node_id, url.rstrip("/"), public_key, relay)
            await store.put_node(conn, node, ms(self.clock))
        return await self.node_record(node_id)

    async def nodes(self) -> dict[str, Any]:
        """Every registered node, with whether it offers relaying (signed)."""
        async with self.db.read() as conn:
            listed = await store.list_nodes(conn)
        records = [
            {
                "node_id": n.node_id,
                "url": n.url,
                "public_key": b64encode(n.public_key),
                "relay": n.relay,
            }
            for n in listed
        ]
        signed = {"nodes": records, "issued_at": ms(self.clock)}
        return {**signed, "signature": b64encode(sign_document(self.key, NODES_PURPOSE, signed))}

    async def node_public_key(self, node_id: str) -> bytes | None:
        async with self.db.read() as conn:
            node = await store.get_node(conn, node_id)
        return None if node is None else node.public_key

    async def node_record(self, node_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            node = await store.get_node(conn, node_id)
        if node is None:
            raise errors.NotFound(f"no node {node_id!r}")
        doc = {
            "node_id": node.node_id,
            "url": node.url,
            "public_key": b64encode(node.public_key),
            "relay": node.relay,
        }
        signed = {"node": doc, "issued_at": ms(self.clock)}
        return {**signed, "signature": b64encode(sign_document(self.key, NODE_PURPOSE, signed))}

    # --- users -----------------------------------------------------------------------

    async def check_login(self, node_id: str, username: str, password: str) -> dict[str, Any]:
        """A node asks whether ``password`` is right; the first node asking becomes home.

        Rate limited per node and per account, and verified in a thread (LoginChecks)."""
        await self.login_checks.admit(node_id, username)
        async with self.db.read() as conn:
            account = await store.get_account(conn, username)
        if account is not None and account.disabled:
            account = None
        verifier = self._dummy_hash if account is None else account.password_hash  # the same cost either way
        right = await self.login_checks.run(lambda: verify_password(self.hasher, verifier, password))
        if account is None or not right:
            raise errors.InvalidCredentials("wrong username or password")
        home_node = account.home_node
        if home_node is None:  # the first node to ask: two asking at once get one answer
            async with self.db.write() as conn:
                home_node = await store.claim_home(conn, username, node_id, ms(self.clock))
        if home_node != node_id:
            async with self.db.read() as conn:
                home = None if home_node is None else await store.get_node(conn, home_node)
            raise errors.WrongHomeNode(
                f"{username} lives on another node; log in there",
                home_url=None if home is None else home.url,
            )
        record = (await self.user(username, asking_node=node_id))["user"]
        # An approval of its own kind, for this node, now: it cannot pass for a user record
        # (which anyone may fetch), nor be replayed to another node or later.
        signed = {"user": record, "node_id": node_id, "issued_at": ms(self.clock)}
        return {**signed, "signature": b64encode(sign_document(self.key, LOGIN_PURPOSE, signed))}

    async def publish_keys(
        self, node_id: str, username: str, sign_key: str, box_key: str, binding_signature: str
    ) -> dict[str, Any]:
        async with self.db.read() as conn:
            account = await store.get_account(conn, username)
        if account is None:
            raise errors.UnknownUser(f"no user {username!r}")
        if account.home_node != node_id:
            raise errors.Forbidden("only the user's home node may publish their keys")
        try:
            sign_raw = b64decode(sign_key, size=32, what="sign_key")
            box_raw = b64decode(box_key, size=32, what="box_key")
            sig_raw = b64decode(binding_signature, size=64, what="binding_signature")
            verify_document(sign_raw, KEY_BINDING_PURPOSE, key_binding(username, sign_key, box_key), sig_raw)
        except MalformedError as exc:
            raise errors.InvalidRequest(str(exc)) from exc
        except SignatureError as exc:
            raise errors.Forbidden("key binding signature does not verify") from exc
        async with self.db.write() as conn:
            await store.update_account(
                conn,
                username,
                ms(self.clock),
                sign_key=sign_raw,
                box_key=box_raw,
                binding_signature=sig_raw,
            )
        return await self.user(username, asking_node=node_id)

    async def set_card(
        self, node_id: str, username: str, *, display_name: str, title: str, department: str
    ) -> dict[str, Any]:
        """The home node publishes what people search by: name, title, department."""
        async with self.db.write() as conn:
            account = await store.get_account(conn, username)
            if account is None:
                raise errors.UnknownUser(f"no user {username!r}")
            if account.home_node != node_id:
                raise errors.Forbidden("only the user's home node may change their card")
            await store.update_account(
                conn,
                username,
                ms(self.clock),
                display_name=display_name,
                title=title,
                department=department,
            )
        return await self.user(username, asking_node=node_id)

    async def user(self, username: str, *, asking_node: str | None = None) -> dict[str, Any]:
        async with self.db.read() as conn:
            account = await store.get_account(conn, username)
            if account is None or account.disabled:
                raise errors.UnknownUser(f"no user {username!r}")
            nodes = {n.node_id: n for n in await store.list_nodes(conn)}
            online = await store.online_users(conn, self._presence_since())
            homed = await self._homed_on(conn, asking_node)
        record = _record(account, nodes, online, homed)
        signed = {"user": record, "issued_at": ms(self.clock)}
        return {**signed, "signature": b64encode(sign_document(self.key, USER_PURPOSE, signed))}

    async def users(self, *, asking_node: str | None = None) -> dict[str, Any]:
        async with self.db.read() as conn:
            accounts = await store.list_accounts(conn)
            nodes = {n.node_id: n for n in await store.list_nodes(conn)}
            online = await store.online_users(conn, self._presence_since())
        homed = {a.username for a in accounts if asking_node and a.home_node == asking_node}
        records = [_record(a, nodes, online, homed) for a in accounts if not a.disabled]
        signed = {"users": records, "issued_at": ms(self.clock)}
        return {**signed, "signature": b64encode(sign_document(self.key, USERS_PURPOSE, signed))}

    # --- presence --------------------------------------------------------------------

    async def report_presence(self, node_id: str, entries: list[PresenceEntry]) -> None:
        """A node says which of its users are online, with status and who blocks whom."""
        async with self.db.write() as conn:
            accounts = {a.username: a for a in await store.list_accounts(conn)}
            hosted = [
                e for e in entries if e.username in accounts and accounts[e.username].home_node == node_id
            ]
            await store.replace_presence(conn, node_id, hosted, ms(self.clock))
            node = await store.get_node(conn, node_id)
            if node is not None:
                await store.put_node(conn, node, ms(self.clock))

    @staticmethod
    async def _homed_on(conn: Any, node_id: str | None) -> set[str]:
        if node_id is None:
            return set()
        return {a.username for a in await store.list_accounts(conn) if a.home_node == node_id}

    def _presence_since(self) -> int:
        return ms(self.clock) - int(self.presence_ttl * 1000)


def hidden_from_node(hidden_from: Iterable[str], node_users: Iterable[str]) -> bool:
    """Must a user who blocks ``hidden_from`` appear offline to a node home to ``node_users``?

    Yes when they block every one of its users: nobody there may see their status,
    so the node is not given it. A node home to no one has no viewer to show it to,
    and gets the status of no one who blocks anybody (a blocked person could
    otherwise read it through a node of theirs with no users on it)."""
    blocked = set(hidden_from)
    return bool(blocked) and blocked.issuperset(node_users)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise errors.InvalidRequest(
            f"password must be at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )


def _record(
    account: DirectoryAccount,
    nodes: dict[str, DirectoryNode],
    online: dict[str, PresenceEntry],
    asking_users: set[str],
) -> dict[str, Any]:
    """A user's public record. ``hidden_from`` names only users of the asking
    node, so each node learns just the blocks it must enforce for its users;
    and a user who blocks every user of the asking node is answered offline
    (:func:`hidden_from_node`), so a blocked person's own node never holds the
    status it would be asked to hide."""
    node = nodes.get(account.home_node or "")
    presence = online.get(account.username)
    if presence is not None and hidden_from_node(presence.hidden_from, asking_users):
        presence = None
    return {
        "username": account.username,
        "display_name": account.display_name,
        "title": account.title,
        "department": account.department,
        "home_node": account.home_node,
        "node_url": None if node is None else node.url,
        "sign_key": None if account.sign_key is None else b64encode(account.sign_key),
        "box_key": None if account.box_key is None else b64encode(account.box_key),
        "binding_signature": (
            None if account.binding_signature is None else b64encode(account.binding_signature)
        ),
        "online": presence is not None,
        "status": "offline" if presence is None else presence.status,
        "status_text": "" if presence is None else presence.status_text,
        "hidden_from": [] if presence is None else sorted(set(presence.hidden_from) & asking_users),
    }
