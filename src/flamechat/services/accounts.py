"""Logging in on a node: hybrid authentication, the key vault, sessions.

* The directory checks the password when it can; the node then keeps its own
  Argon2id verifier so the user can log in later while the directory is down.
* A node refuses a password its cached verifier does not accept, even if the
  directory accepts it: the directory must not be able to log in as a user on
  a node that knows them (docs/threat-model.md).
* The user's private keys are stored wrapped under a password-derived key and,
  per session, under a key derived from the session token that only the
  user's cookie holds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from argon2 import PasswordHasher

from flamechat.crypto import (
    KdfParams,
    UserKeys,
    b64encode,
    session_key_from_token,
    session_lookup_id,
    sign_document,
    unwrap_with_key,
    unwrap_with_password,
    wrap_with_key,
    wrap_with_password,
)
from flamechat.crypto.errors import CryptoError
from flamechat.protocol import errors
from flamechat.services.clock import Clock, ms
from flamechat.services.directory import KEY_BINDING_PURPOSE, key_binding
from flamechat.services.directory_view import DirectoryView
from flamechat.services.keyed_locks import KeyedLocks
from flamechat.services.keyring import KeyRing
from flamechat.services.passwords import verify_password
from flamechat.storage import node_accounts
from flamechat.storage.database import Database
from flamechat.storage.records import LocalAccount, SessionRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Session:
    username: str
    csrf_token: str
    lookup_id: str


@dataclass(frozen=True)
class LoginResult:
    token: str
    session: Session
    directory_online: bool


SESSION_MEMORY = 10_000  # sessions remembered at most
SESSION_MEMORY_MS = 10_000  # for at most this long


class AccountService:
    def __init__(
        self,
        db: Database,
        directory: DirectoryView,
        keyring: KeyRing,
        hasher: PasswordHasher,
        clock: Clock,
        *,
        node_id: str,
        kdf: KdfParams,
        session_ttl: float = 12 * 3600,
    ) -> None:
        self.db = db
        self.directory = directory
        self.keyring = keyring
        self.hasher = hasher
        self.clock = clock
        self.node_id = node_id
        self.kdf = kdf
        self.session_ttl = session_ttl
        self._on_unlock: list[Callable[[str], Awaitable[None]]] = []
        # Sessions checked in the last few seconds, so that a busy page's requests
        # do not each read the session table. Logout forgets at once; a session
        # deleted by another process (node-admin) lives here at most that long.
        self._sessions: dict[str, tuple[int, SessionRecord]] = {}
        # Counts logouts: a session read from the table while one ran may be the one
        # logged out, so it is not remembered (it would outlive its logout by up to
        # SESSION_MEMORY_MS, for a request let in just before it).
        self._logouts = 0
        self._first_logins = KeyedLocks()

    def on_unlock(self, callback: Callable[[str], Awaitable[None]]) -> None:
        """Run ``callback(username)`` after a user's keys are unlocked at login."""
        self._on_unlock.append(callback)

    async def login(self, username: str, password: str) -> LoginResult:
        async with self.db.read() as conn:
            account = await node_accounts.get_account(conn, username)
        try:
            record = await self.directory.check_login(username, password, node_id=self.node_id)
            directory_online = True
        except (errors.DirectoryUnavailable, errors.RateLimited):
            # A user this node knows logs in on its own verifier, as while the directory is down:
            # someone flooding the directory with guesses at their password does not lock them out.
            if account is None:
                raise
            directory_online = False
            record = None
        keys: UserKeys | None = None
        if account is None:
            account, keys = await self._first_account(username, password)
        if keys is None:  # the node knew the user, or another login just made the account
            keys = await self._open_account(account, password, directory_online=directory_online)

        # Only the stored keys are ever published: they are the ones this node opens envelopes with.
        if record is not None and (record.sign_key != account.sign_key or record.box_key != account.box_key):
            await self.publish_keys(username, keys)

        token = secrets.token_bytes(32)
        session = Session(username, secrets.token_urlsafe(24), session_lookup_id(token))
        async with self.db.write() as conn:
            await node_accounts.add_session(
                conn,
                SessionRecord(
                    lookup_id=session.lookup_id,
                    username=username,
                    csrf_token=session.csrf_token,
                    wrapped_keys=wrap_with_key(keys.to_bytes(), session_key_from_token(token)),
                    expires_at=ms(self.clock) + int(self.session_ttl * 1000),
                ),
                ms(self.clock),
            )
        self.keyring.unlock(username, keys)
        await self._unlocked(username)
        return LoginResult(_encode_token(token), session, directory_online)

    async def _unlocked(self, username: str) -> None:
        """Run the unlock callbacks (open held envelopes, collect from relays). The
        session exists already: whatever they meet, in mail that others sent, must
        not keep its owner from logging in, so a failure is logged, not raised."""
        for callback in self._on_unlock:
            try:
                await callback(username)
            except Exception:
                log.exception("after unlocking %s's keys", username)

    async def _first_account(self, username: str, password: str) -> tuple[LocalAccount, UserKeys | None]:
        """Create the user's account and keys, once: first logins running at the
        same time wait for each other here, and the later ones get the account
        the first made (with ``None`` for keys: they must open the stored ones)."""
        async with self._first_logins.hold(username):
            async with self.db.read() as conn:
                stored = await node_accounts.get_account(conn, username)
            if stored is not None:
                return stored, None
            keys = UserKeys.generate()
            fresh = await asyncio.to_thread(self._new_account, username, password, keys)
            async with self.db.write() as conn:
                stored = await node_accounts.put_account(conn, fresh, ms(self.clock))
        if stored.wrapped_keys != fresh.wrapped_keys:  # another process created it meanwhile
            return stored, None
        return stored, keys

    async def _open_account(
        self, account: LocalAccount, password: str, *, directory_online: bool
    ) -> UserKeys:
        """The stored keys, if the node's own verifier accepts ``password``."""
        if not await asyncio.to_thread(verify_password, self.hasher, account.verifier, password):
            if directory_online:
                raise errors.LocalCredentialsMismatch(
                    "this node knows a different password for you; the node operator "
                    "must run `flame node-admin forget-user` after a password reset"
                )
            raise errors.InvalidCredentials("wrong username or password")
        try:
            secret = await asyncio.to_thread(unwrap_with_password, account.wrapped_keys, password)
        except CryptoError as exc:
            raise errors.LocalCredentialsMismatch("stored keys do not open with this password") from exc
        return UserKeys.from_bytes(secret)

    def _new_account(self, username: str, password: str, keys: UserKeys) -> LocalAccount:
        public = keys.public
        return LocalAccount(
            username=username,
            verifier=self.hasher.hash(password),
            wrapped_keys=wrap_with_password(keys.to_bytes(), password, self.kdf),
            sign_key=public.sign,
            box_key=public.box,
            keys_published=False,
        )

    async def publish_keys(self, username: str, keys: UserKeys) -> bool:
        """Publish the user's public keys with a self-signed binding. False if unreachable."""
        sign_key, box_key = b64encode(keys.public.sign), b64encode(keys.public.box)
        binding = sign_document(keys, KEY_BINDING_PURPOSE, key_binding(username, sign_key, box_key))
        body = {"sign_key": sign_key, "box_key": box_key, "binding_signature": b64encode(binding)}
        try:
            await self.directory.publish_keys(username, body)
        except errors.DirectoryUnavailable:
            log.warning("could not publish keys of %s yet", username)
            return False
        async with self.db.write() as conn:
            await node_accounts.set_published(conn, username, True)
        return True

    async def authenticate(self, token: str | None) -> Session:
        raw = _decode_token(token)
        lookup_id = session_lookup_id(raw)
        now = ms(self.clock)
        remembered = self._sessions.get(lookup_id)
        if remembered is not None and remembered[0] > now and remembered[1].expires_at > now:
            record: SessionRecord | None = remembered[1]
        else:
            logouts = self._logouts
            async with self.db.read() as conn:
                record = await node_accounts.get_session(conn, lookup_id, now)
            if record is not None and logouts == self._logouts:
                if len(self._sessions) >= SESSION_MEMORY:
                    self._sessions.clear()  # bounded; it refills from the database
                self._sessions[lookup_id] = (now + SESSION_MEMORY_MS, record)
        if record is None:
            self._sessions.pop(lookup_id, None)
            raise errors.NotAuthenticated("log in first")
        if self.keyring.get(record.username) is None:
            # The node restarted (or locked the keys) while this session lived on in
            # the browser: unlock from the session, and do what a login does after
            # unlocking, or envelopes held sealed meanwhile would stay unopened.
            try:
                secret = unwrap_with_key(record.wrapped_keys, session_key_from_token(raw))
            except CryptoError as exc:
                raise errors.NotAuthenticated("session keys do not open; log in again") from exc
            self.keyring.unlock(record.username, UserKeys.from_bytes(secret))
            await self._unlocked(record.username)
        return Session(record.username, record.csrf_token, record.lookup_id)

    async def logout(self, session: Session) -> None:
        async with self.db.write() as conn:
            await node_accounts.delete_session(conn, session.lookup_id)
            remaining = await node_accounts.count_sessions(conn, session.username, ms(self.clock))
        self._logouts += 1  # after the delete: a read begun before it is not remembered
        self._sessions.pop(session.lookup_id, None)
        if remaining == 0:
            self.keyring.lock(session.username)

    async def expire_sessions(self) -> None:
        """Drop expired sessions and lock the keys of users left without one."""
        now = ms(self.clock)
        self._sessions.clear()  # what it held has expired, and is refused as such anyway
        async with self.db.write() as conn:
            await node_accounts.delete_expired_sessions(conn, now)
            for username in self.keyring.unlocked():
                if await node_accounts.count_sessions(conn, username, now) == 0:
                    self.keyring.lock(username)

    async def forget_user(self, username: str) -> None:
        """Operator action after a password reset: drop the cached verifier and keys."""
        async with self.db.write() as conn:
            await node_accounts.delete_account(conn, username)
        self.keyring.lock(username)

    async def hosted(self) -> set[str]:
        async with self.db.read() as conn:
            return await node_accounts.hosted_usernames(conn)


def _encode_token(token: bytes) -> str:
    return base64.urlsafe_b64encode(token).decode("ascii").rstrip("=")


def _decode_token(token: str | None) -> bytes:
    if not token or len(token) != 43:
        raise errors.NotAuthenticated("log in first")
    try:
        return base64.urlsafe_b64decode(token + "=")
    except (binascii.Error, ValueError) as exc:
        raise errors.NotAuthenticated("log in first") from exc
