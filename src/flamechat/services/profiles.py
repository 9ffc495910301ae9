"""Profiles: written by their owner, signed with the owner's key, served by the
owner's node, cached by other nodes with a freshness check, and shown from
the cache (marked stale) when the owner's node cannot be reached.

The avatar travels separately; the signed profile carries its SHA-256, so a
cached or fetched avatar is checked against what the owner signed.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import warnings
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import ValidationError

from flamechat.crypto import SignatureError, b64decode, b64encode, sign_document, verify_document
from flamechat.crypto.errors import MalformedError
from flamechat.protocol import errors, models
from flamechat.services.clock import Clock, ms
from flamechat.services.directory_view import DirectoryView
from flamechat.services.keyring import KeyRing
from flamechat.services.media import decoding
from flamechat.services.ports import PeerPort, TransportError
from flamechat.storage import node_social
from flamechat.storage.database import Database
from flamechat.storage.node_social import StoredProfile

log = logging.getLogger(__name__)

PROFILE_PURPOSE = "user-profile"
FIELDS = ("display_name", "title", "department", "location", "about")
AVATAR_SIZE = 256
MAX_AVATAR_UPLOAD = 5 * 1024 * 1024
Image.MAX_IMAGE_PIXELS = 40_000_000  # refuse decompression bombs
MAX_AVATAR_BYTES = 1024 * 1024  # a 256×256 PNG as the owner's node makes it is far smaller


def normalise_avatar(data: bytes) -> bytes:
    """Any common image in, a square-bounded PNG out (re-encoding drops metadata)."""
    if len(data) > MAX_AVATAR_UPLOAD:
        raise errors.PayloadTooLarge("avatars are limited to 5 MiB", field="avatar")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that: refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with (
                Image.open(io.BytesIO(data)) as opened,
                decoding(opened, (AVATAR_SIZE, AVATAR_SIZE)) as source,
            ):
                source.load()
                # Phones store photos sideways plus an EXIF orientation; the PNG
                # drops EXIF, so apply the orientation first.
                image = ImageOps.exif_transpose(source) or source
                if image.mode not in ("RGB", "RGBA", "L", "LA"):
                    image = image.convert("RGBA")  # palettes and the like scale badly as they are
                # Scaled down before it becomes RGBA: 4 bytes a pixel of a small picture only.
                image.thumbnail((AVATAR_SIZE, AVATAR_SIZE))
                image = image.convert("RGBA")
                out = io.BytesIO()
                image.save(out, format="PNG", optimize=True)
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise errors.InvalidRequest("the avatar is not an image this node can read", field="avatar") from exc
    return out.getvalue()


def is_avatar(data: bytes) -> bool:
    """Is ``data`` what an owner's node makes of an avatar: a PNG of at most
    256×256? A peer's node is trusted for nothing: the hash in the signed
    profile proves only that the owner chose these bytes."""
    if len(data) > MAX_AVATAR_BYTES:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format != "PNG" or max(image.size) > AVATAR_SIZE:
                    return False
                image.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning):
        return False
    return True


class ProfileService:
    def __init__(
        self,
        db: Database,
        directory: DirectoryView,
        peers: PeerPort,
        keyring: KeyRing,
        clock: Clock,
        *,
        node_id: str,
        fresh_for: float = 60.0,
    ) -> None:
        self.db = db
        self.directory = directory
        self.peers = peers
        self.keyring = keyring
        self.clock = clock
        self.node_id = node_id
        self.fresh_for = fresh_for

    # --- the owner's side -------------------------------------------------------

    async def update(
        self, username: str, fields: dict[str, str], avatar: bytes | None = None
    ) -> dict[str, Any]:
        """Sign and store a new version of ``username``'s own profile."""
        keys = self.keyring.require(username)
        async with self.db.read() as conn:
            current = await node_social.get_profile(conn, username)
        document = _document(current) if current else {}
        stored_avatar = current.avatar if current else None
        if avatar is not None:
            stored_avatar = await asyncio.to_thread(normalise_avatar, avatar)
        document.update({k: v.strip() for k, v in fields.items() if k in FIELDS})
        document["username"] = username
        document.setdefault("display_name", username)
        if not document["display_name"]:
            raise errors.InvalidRequest("display name cannot be empty", field="display_name")
        document["avatar_sha256"] = hashlib.sha256(stored_avatar).hexdigest() if stored_avatar else None
        document["updated_at"] = ms(self.clock)
        signature = sign_document(keys, PROFILE_PURPOSE, document)
        async with self.db.write() as conn:
            await node_social.put_profile(
                conn,
                StoredProfile(username, json.dumps(document), signature, stored_avatar, ms(self.clock)),
            )
        card = {k: str(document.get(k) or "") for k in ("display_name", "title", "department")}
        try:
            await self.directory.set_card(username, card)
        except errors.DirectoryUnavailable:
            log.info("directory unreachable; %s's card is published at the next profile save", username)
        return {**document, "stale": False}

    async def signed(self, username: str) -> dict[str, Any]:
        """What peers fetch: the stored document and its signature."""
        async with self.db.read() as conn:
            stored = await node_social.get_profile(conn, username)
        if stored is None or not await self._hosted(username):
            raise errors.NotFound(f"{username} has no profile on this node")
        return {"profile": _document(stored), "signature": b64encode(stored.signature)}

    async def hosted_avatar(self, username: str) -> bytes:
        """What peers fetch: the avatar of a user who lives here (not one cached)."""
        data = await self.avatar(username)  # first: a name with nothing stored costs no lookup
        if not await self._hosted(username):
            raise errors.NotFound(f"{username} has no avatar on this node")
        return data

    async def avatar(self, username: str) -> bytes:
        async with self.db.read() as conn:
            stored = await node_social.get_profile(conn, username)
        if stored is None or stored.avatar is None:
            raise errors.NotFound(f"{username} has no avatar")
        return stored.avatar

    async def _hosted(self, username: str) -> bool:
        user = await self.directory.resolve(username)
        return user.home_node == self.node_id

    # --- anyone's side ------------------------------------------------------------

    async def view(self, username: str) -> dict[str, Any]:
        """A profile to show: fresh if possible, cached (stale) if the owner's node is down."""
        user = await self.directory.resolve(username)
        async with self.db.read() as conn:
            cached = await node_social.get_profile(conn, username)
        base = {
            "username": username,
            "display_name": user.display_name,
            "title": user.title,
            "department": user.department,
            "location": "",
            "about": "",
            "avatar_sha256": None,
            "updated_at": None,
        }
        if user.home_node == self.node_id:
            return {**base, **(_document(cached) if cached else {}), "stale": False}
        shown = _checked_or_none(cached)  # a cache written before the checks may hold anything
        fresh = cached is not None and ms(self.clock) - cached.fetched_at <= self.fresh_for * 1000
        if shown is not None and fresh:
            return {**base, **shown, "stale": False}
        try:
            if user.node_url is None or user.sign_key is None:
                raise TransportError("owner's node unknown", transient=True)
            fetched = await self._fetch(username, user.node_url, user.sign_key, cached)
            return {**base, **fetched, "stale": False}
        except (TransportError, errors.FlameError) as exc:
            if isinstance(exc, TransportError) and exc.status == 404:
                return {**base, "stale": False}  # their node answered: no profile written yet
            log.info("profile of %s not refreshed: %s", username, exc)
            return {**base, **(shown or {}), "stale": True}

    async def _fetch(
        self, username: str, node_url: str, sign_key: bytes, cached: StoredProfile | None
    ) -> dict[str, Any]:
        answer = await self.peers.profile(node_url, username)
        document = answer.get("profile")
        try:
            signature = b64decode(str(answer.get("signature", "")), size=64)
            if not isinstance(document, dict) or document.get("username") != username:
                raise MalformedError("profile is for someone else")
            verify_document(sign_key, PROFILE_PURPOSE, document, signature)
        except (SignatureError, MalformedError) as exc:
            raise errors.EnvelopeRejected(f"profile of {username} fails its signature check") from exc
        # Signed is not enough: the owner's node may be buggy or hostile. What is
        # cached and shown fits the profile format, as a local edit must.
        try:
            checked = _checked(document)
        except ValidationError as exc:
            raise errors.EnvelopeRejected(f"profile of {username} does not fit the profile format") from exc
        avatar = cached.avatar if cached else None
        wanted = document.get("avatar_sha256")
        if wanted is None:
            avatar = None
        elif avatar is None or hashlib.sha256(avatar).hexdigest() != wanted:
            avatar = await self.peers.avatar(node_url, username)
            if hashlib.sha256(avatar).hexdigest() != wanted:
                raise errors.EnvelopeRejected(f"avatar of {username} does not match its profile")
            if not await asyncio.to_thread(is_avatar, avatar):
                raise errors.EnvelopeRejected(f"avatar of {username} is not a PNG of at most 256×256")
        async with self.db.write() as conn:
            await node_social.put_profile(
                conn, StoredProfile(username, json.dumps(document), signature, avatar, ms(self.clock))
            )
        return checked

    async def cached_avatar(self, username: str) -> bytes:
        """The avatar to show locally (own or cached), refreshing the profile if needed."""
        await self.view(username)
        return await self.avatar(username)

    async def cached_profiles(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            stored = await node_social.all_profiles(conn)
        return [_document(p) for p in stored]


def _document(stored: StoredProfile) -> dict[str, Any]:
    value = json.loads(stored.document)
    return value if isinstance(value, dict) else {}


def _checked(document: Any) -> dict[str, Any]:
    """The profile's known fields, checked (raises ValidationError)."""
    return models.ProfileDocument.model_validate(document).model_dump()


def _checked_or_none(stored: StoredProfile | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    try:
        return _checked(_document(stored))
    except (ValidationError, ValueError):
        return None
