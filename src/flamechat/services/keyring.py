"""Unlocked user keys, held in memory only while the user has a session."""

from __future__ import annotations

from flamechat.crypto import UserKeys
from flamechat.protocol import errors


class KeyRing:
    def __init__(self) -> None:
        self._keys: dict[str, UserKeys] = {}

    def unlock(self, username: str, keys: UserKeys) -> None:
        self._keys[username] = keys

    def lock(self, username: str) -> None:
        self._keys.pop(username, None)

    def get(self, username: str) -> UserKeys | None:
        return self._keys.get(username)

    def require(self, username: str) -> UserKeys:
        keys = self._keys.get(username)
        if keys is None:
            raise errors.NotAuthenticated("your keys are locked: log in again")
        return keys

    def unlocked(self) -> set[str]:
        return set(self._keys)
