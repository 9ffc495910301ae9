"""Profiles (services/profiles.py): signed by their owner, checked by every
reader, cached, and shown stale when the owner's node is down. Real storage,
fake peers, a directory that is down, a fake clock."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image

from flamechat.crypto import b64decode, b64encode, sign_document, verify_document
from flamechat.protocol import errors, models
from flamechat.services.clock import ms
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.keyring import KeyRing
from flamechat.services.ports import TransportError
from flamechat.services.profiles import (
    AVATAR_SIZE,
    MAX_AVATAR_UPLOAD,
    PROFILE_PURPOSE,
    ProfileService,
    normalise_avatar,
)
from flamechat.storage import node_cache, node_social
from flamechat.storage.database import Database
from flamechat.storage.records import KnownUser
from tests.unit.support import DirectoryDown, FakeClock, user_keys

ME = "n" + "m" * 24
BOB_NODE = "n" + "b" * 24
BOB_URL = "http://bob.test"
ALICE, BOB, MALLORY = user_keys("alice"), user_keys("bob"), user_keys("mallory")


def png(width: int = 40, height: int = 30, colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


@dataclass
class FakePeers:
    """bob's node: serves whatever profile and avatar the test puts here, or is down."""

    profile_answer: dict[str, Any] | None = None
    avatar_answer: bytes = b""
    down: bool = False
    calls: list[str] = field(default_factory=list)

    async def profile(self, node_url: str, username: str) -> dict[str, Any]:
        self.calls.append(f"profile {node_url} {username}")
        if self.down or self.profile_answer is None:
            raise TransportError("connection refused", transient=True)
        return self.profile_answer

    async def avatar(self, node_url: str, username: str) -> bytes:
        self.calls.append(f"avatar {node_url} {username}")
        if self.down:
            raise TransportError("connection refused", transient=True)
        return self.avatar_answer


@dataclass
class World:
    db: Database
    clock: FakeClock
    peers: FakePeers
    keyring: KeyRing
    profiles: ProfileService

    async def stored(self, username: str) -> dict[str, Any] | None:
        async with self.db.read() as conn:
            profile = await node_social.get_profile(conn, username)
        return None if profile is None else dict(json.loads(profile.document))


@pytest.fixture
async def world(node_db: Database) -> World:
    clock = FakeClock()
    directory = DirectoryView(node_db, DirectoryDown(), EventHub(), clock, pinned_key=b"\0" * 32)
    async with node_db.write() as conn:
        await node_cache.put_users(
            conn,
            [
                KnownUser(
                    "alice", "Alice", ME, "http://me.test", ALICE.public.sign, ALICE.public.box, True, 0
                ),
                KnownUser(
                    "bob", "Bob", BOB_NODE, BOB_URL, BOB.public.sign, BOB.public.box, True, 0, title="Dev"
                ),
            ],
        )
    peers, keyring = FakePeers(), KeyRing()
    profiles = ProfileService(node_db, directory, peers, keyring, clock, node_id=ME, fresh_for=60.0)  # type: ignore[arg-type]
    return World(node_db, clock, peers, keyring, profiles)


def bobs_profile(signer: Any = BOB, **fields: Any) -> dict[str, Any]:
    document = {
        "username": "bob",
        "display_name": "Bob Builder",
        "title": "Lead",
        "department": "Ops",
        "location": "Lyon",
        "about": "hi",
        "avatar_sha256": None,
        "updated_at": 1,
        **fields,
    }
    return {"profile": document, "signature": b64encode(sign_document(signer, PROFILE_PURPOSE, document))}


# --- the owner's side ----------------------------------------------------------------------------


async def test_the_owner_saves_a_profile_signed_with_their_key(world: World) -> None:
    world.keyring.unlock("alice", ALICE)
    saved = await world.profiles.update(
        "alice", {"display_name": "  Alice A. ", "title": "CTO", "about": "**hi**"}
    )
    assert saved["display_name"] == "Alice A."  # trimmed
    assert saved["stale"] is False
    served = await world.profiles.signed("alice")
    document = served["profile"]
    assert (document["username"], document["title"], document["about"]) == ("alice", "CTO", "**hi**")
    verify_document(ALICE.public.sign, PROFILE_PURPOSE, document, b64decode(served["signature"]))


async def test_a_profile_cannot_be_saved_with_locked_keys(world: World) -> None:
    with pytest.raises(errors.NotAuthenticated):
        await world.profiles.update("alice", {"display_name": "Alice"})
    assert await world.stored("alice") is None


async def test_unknown_fields_cannot_rename_the_owner(world: World) -> None:
    world.keyring.unlock("alice", ALICE)
    await world.profiles.update("alice", {"display_name": "Alice", "username": "bob", "updated_at": "0"})
    stored = await world.stored("alice")
    assert stored is not None
    assert stored["username"] == "alice"
    assert stored["updated_at"] == int(world.clock.now() * 1000)


async def test_an_empty_display_name_is_refused(world: World) -> None:
    world.keyring.unlock("alice", ALICE)
    with pytest.raises(errors.InvalidRequest) as refused:
        await world.profiles.update("alice", {"display_name": "   "})
    assert refused.value.field == "display_name"


async def test_the_avatar_hash_is_signed_with_the_profile(world: World) -> None:
    world.keyring.unlock("alice", ALICE)
    await world.profiles.update("alice", {"display_name": "Alice"}, avatar=png())
    avatar = await world.profiles.avatar("alice")
    document = (await world.profiles.signed("alice"))["profile"]
    assert document["avatar_sha256"] == hashlib.sha256(avatar).hexdigest()


async def test_a_node_does_not_serve_profiles_of_users_it_does_not_host(world: World) -> None:
    async with world.db.write() as conn:
        await node_social.put_profile(
            conn, node_social.StoredProfile("bob", json.dumps({"username": "bob"}), b"s" * 64, None, 0)
        )
    with pytest.raises(errors.NotFound):
        await world.profiles.signed("bob")  # a cached copy is not ours to vouch for


# --- a reader's side -----------------------------------------------------------------------------


async def test_a_remote_profile_is_fetched_checked_and_cached(world: World) -> None:
    world.peers.profile_answer = bobs_profile()
    shown = await world.profiles.view("bob")
    assert (shown["display_name"], shown["location"], shown["stale"]) == ("Bob Builder", "Lyon", False)
    assert world.peers.calls == [f"profile {BOB_URL} bob"]
    world.clock.advance(30)
    assert (await world.profiles.view("bob"))["display_name"] == "Bob Builder"
    assert len(world.peers.calls) == 1  # fresh enough: no second fetch


async def test_a_profile_is_shown_stale_from_cache_when_its_node_is_down(world: World) -> None:
    world.peers.profile_answer = bobs_profile()
    await world.profiles.view("bob")
    world.peers.down = True
    world.clock.advance(61)
    shown = await world.profiles.view("bob")
    assert (shown["display_name"], shown["stale"]) == ("Bob Builder", True)
    assert len(world.peers.calls) == 2  # it did try


async def test_never_fetched_and_node_down_shows_the_directory_card_as_stale(world: World) -> None:
    world.peers.down = True
    shown = await world.profiles.view("bob")
    assert (shown["display_name"], shown["title"], shown["about"], shown["stale"]) == ("Bob", "Dev", "", True)


@pytest.mark.parametrize(
    "answer",
    [
        bobs_profile(signer=MALLORY),  # signed by someone else
        bobs_profile(username="mallory"),  # bob's signature, but a profile of someone else
        {**bobs_profile(), "signature": "not base64"},
        {"profile": "bob", "signature": bobs_profile()["signature"]},
        {},
        # Signed by bob's key, but not a profile: his node is buggy or hostile.
        bobs_profile(display_name=5),
        bobs_profile(about=["x"]),
        bobs_profile(title="x" * 100_000),
        bobs_profile(display_name=""),
        bobs_profile(updated_at=True),
        bobs_profile(updated_at="1"),
        bobs_profile(avatar_sha256="../../etc/passwd"),
        bobs_profile(location={"nested": "object"}),
    ],
)
async def test_a_forged_profile_is_neither_shown_nor_cached(world: World, answer: dict[str, Any]) -> None:
    world.peers.profile_answer = answer
    shown = await world.profiles.view("bob")
    assert shown["display_name"] == "Bob"  # the directory card, not the forgery
    assert shown["stale"] is True
    assert await world.stored("bob") is None
    models.ProfileView(**shown)  # what GET /api/v1/users/bob/profile answers: no 500


async def test_a_bad_profile_leaves_the_last_good_one_shown_stale(world: World) -> None:
    world.peers.profile_answer = bobs_profile()
    await world.profiles.view("bob")
    world.peers.profile_answer = bobs_profile(about=["x"], updated_at=2)
    world.clock.advance(61)
    shown = await world.profiles.view("bob")
    assert (shown["display_name"], shown["about"], shown["stale"]) == ("Bob Builder", "hi", True)
    assert (await world.stored("bob") or {})["about"] == "hi"  # the bad one was not cached


async def test_fields_a_newer_node_adds_are_ignored_not_shown(world: World) -> None:
    world.peers.profile_answer = bobs_profile(pronouns="he/him")
    shown = await world.profiles.view("bob")
    assert (shown["display_name"], shown["stale"]) == ("Bob Builder", False)
    assert "pronouns" not in shown


async def test_a_bad_profile_cached_before_the_checks_is_not_shown(world: World) -> None:
    bad = bobs_profile(display_name=5)
    async with world.db.write() as conn:  # as an older version of this node cached it
        await node_social.put_profile(
            conn,
            node_social.StoredProfile(
                "bob", json.dumps(bad["profile"]), b64decode(bad["signature"]), None, ms(world.clock)
            ),
        )
    world.peers.down = True
    shown = await world.profiles.view("bob")
    assert (shown["display_name"], shown["stale"]) == ("Bob", True)  # the directory card
    models.ProfileView(**shown)


async def test_an_altered_profile_is_refused(world: World) -> None:
    genuine = bobs_profile()
    world.peers.profile_answer = {**genuine, "profile": {**genuine["profile"], "title": "CEO"}}
    shown = await world.profiles.view("bob")
    assert shown["title"] == "Dev"
    assert await world.stored("bob") is None


async def test_an_avatar_must_match_the_signed_hash(world: World) -> None:
    picture = png()
    world.peers.profile_answer = bobs_profile(avatar_sha256=hashlib.sha256(picture).hexdigest())
    world.peers.avatar_answer = png(colour="blue")  # not the one bob signed
    assert (await world.profiles.view("bob"))["stale"] is True
    assert await world.stored("bob") is None
    world.peers.avatar_answer = picture
    world.clock.advance(61)
    assert await world.profiles.cached_avatar("bob") == picture


@pytest.mark.parametrize(
    "served",
    [
        b"<html><script>alert(1)</script></html>",  # matches its hash: bob's node chose it
        b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
        "jpeg",
        "huge",
    ],
)
async def test_an_avatar_that_is_not_a_small_png_is_refused_even_when_signed(
    world: World, served: Any
) -> None:
    """The hash in bob's signed profile proves only that bob's node chose these
    bytes; this node serves them to its users as image/png, so it keeps only
    what an owner's node makes: a PNG of at most 256×256."""
    if served == "jpeg":
        out = io.BytesIO()
        Image.new("RGB", (40, 30), "red").save(out, format="JPEG")
        served = out.getvalue()
    elif served == "huge":
        served = png(width=2000, height=2000)
    world.peers.profile_answer = bobs_profile(avatar_sha256=hashlib.sha256(served).hexdigest())
    world.peers.avatar_answer = served
    assert (await world.profiles.view("bob"))["stale"] is True
    assert await world.stored("bob") is None
    with pytest.raises(errors.NotFound):
        await world.profiles.cached_avatar("bob")


async def test_a_cached_avatar_is_not_fetched_again(world: World) -> None:
    picture = png()
    world.peers.profile_answer = bobs_profile(avatar_sha256=hashlib.sha256(picture).hexdigest())
    world.peers.avatar_answer = picture
    await world.profiles.view("bob")
    world.clock.advance(61)
    await world.profiles.view("bob")
    assert [c.split()[0] for c in world.peers.calls] == ["profile", "avatar", "profile"]


# --- avatars -----------------------------------------------------------------------------------


def test_avatars_are_shrunk_to_a_png_without_metadata() -> None:
    source = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # camera make
    exif[0x8825] = {2: (48.0, 51.0, 24.0)}  # GPS
    Image.new("RGB", (1024, 512), "green").save(source, format="JPEG", exif=exif)
    assert b"SecretCam" in source.getvalue()
    result = normalise_avatar(source.getvalue())
    with Image.open(io.BytesIO(result)) as image:
        assert image.format == "PNG"
        assert max(image.size) == AVATAR_SIZE
        assert image.size == (AVATAR_SIZE, AVATAR_SIZE // 2)  # aspect ratio kept
    assert b"SecretCam" not in result


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 50, png()[:60]])
def test_not_an_image_is_refused(data: bytes) -> None:
    with pytest.raises(errors.InvalidRequest) as refused:
        normalise_avatar(data)
    assert refused.value.field == "avatar"


def test_an_oversized_upload_is_refused_before_decoding() -> None:
    with pytest.raises(errors.PayloadTooLarge):
        normalise_avatar(b"\0" * (MAX_AVATAR_UPLOAD + 1))


def test_a_decompression_bomb_is_refused() -> None:
    # 45 megapixels in a 5 KiB file: decoding it to RGBA would take ~180 MB.
    bomb = io.BytesIO()
    Image.new("1", (9000, 5000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 10_000
    with pytest.raises(errors.InvalidRequest):
        normalise_avatar(bomb.getvalue())


def test_a_phone_photo_keeps_its_orientation() -> None:
    source = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: stored sideways, shown rotated 90° clockwise
    Image.new("RGB", (200, 100), "green").save(source, format="JPEG", exif=exif)
    with Image.open(io.BytesIO(normalise_avatar(source.getvalue()))) as image:
        assert image.size == (100, 200)  # as the phone showed it: portrait
