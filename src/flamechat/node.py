"""The node's composition root: build every service once and wire them together.

Only this module knows the concrete classes; each service gets the few
collaborators it needs at construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from flamechat import __version__
from flamechat.config import NodeSettings
from flamechat.crypto import KdfParams, NodeKey, b64decode
from flamechat.federation.blobs import blobs_router
from flamechat.federation.client import HttpDirectory, HttpPeers, SignedClient
from flamechat.federation.routes import federation_router
from flamechat.httpapi.app_options import NO_TELEMETRY
from flamechat.httpapi.errors import install_error_handlers
from flamechat.httpapi.headers import SecurityHeaders
from flamechat.httpapi.limits import BodySizeLimit
from flamechat.httpapi.signed import RequestVerifier
from flamechat.keyfile import load_or_create_key
from flamechat.protocol import errors
from flamechat.services.accounts import AccountService
from flamechat.services.amends import AmendService
from flamechat.services.blocks import BlockService
from flamechat.services.clock import Clock, SystemClock
from flamechat.services.delivery import DeliveryWorker
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.file_fetch import FetchWorker
from flamechat.services.files import FILE_KIND, PART_MAX_BYTES, FileLimits, FileService
from flamechat.services.keyring import KeyRing
from flamechat.services.messaging import MessagingService
from flamechat.services.passwords import make_hasher
from flamechat.services.presence import PresenceService
from flamechat.services.profiles import MAX_AVATAR_UPLOAD, ProfileService
from flamechat.services.ratelimit import RateLimits, RateSettings
from flamechat.services.receiving import ReceivingService
from flamechat.services.relay import RelayService
from flamechat.services.search import SearchService
from flamechat.services.typing import TypingService
from flamechat.services.waiting import WaitingSends
from flamechat.storage.blob_store import BlobStore
from flamechat.storage.database import Database, migrate, sqlite_url
from flamechat.web.api import api_router
from flamechat.web.files_api import files_router
from flamechat.web.pages import CSP, not_found_page, page_router
from flamechat.web.security import cookie_name
from flamechat.web.social_api import social_router

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "web" / "static"


@dataclass
class Node:
    settings: NodeSettings
    key: NodeKey
    db: Database
    client: SignedClient
    events: EventHub
    keyring: KeyRing
    directory: DirectoryView
    accounts: AccountService
    messaging: MessagingService
    receiving: ReceivingService
    relay: RelayService
    delivery: DeliveryWorker
    presence: PresenceService
    blocks: BlockService
    limits: RateLimits
    profiles: ProfileService
    search: SearchService
    files: FileService
    fetcher: FetchWorker
    typing: TypingService
    amends: AmendService

    async def register_until_done(self) -> None:
        """Register with the directory, retrying while it is unreachable."""
        delay = 0.5
        while True:
            try:
                await self.directory.register(
                    self.settings.url, self.key.public_key, relay=self.settings.relay
                )
                await self.directory.directory_key()
                log.info("registered with the directory as %s", self.key.node_id)
                self.relay.collect_soon()
                return
            except errors.FlameError as exc:
                log.warning("directory registration failed (%s); retrying", exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def housekeeping(self) -> None:
        with contextlib.suppress(Exception):
            await self.amends.forget_early()  # counts them: none kept, no lookup per message
        while True:
            await asyncio.sleep(60)
            with contextlib.suppress(Exception):
                await self.accounts.expire_sessions()
            with contextlib.suppress(Exception):
                await self.files.expire_uploads()
            with contextlib.suppress(Exception):
                await self.amends.forget_early()


def build_node(settings: NodeSettings, clock: Clock | None = None) -> Node:
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(sqlite_url(settings.database_path, driver="pysqlite"), "node")
    key = load_or_create_key(settings.key_path)
    db = Database(sqlite_url(settings.database_path))
    client = SignedClient(key, clock)
    events = EventHub(clock, tab_timeout=settings.tab_timeout)
    keyring = KeyRing()
    port = HttpDirectory(client, settings.directory_url)
    pinned = None if settings.directory_key is None else b64decode(settings.directory_key, size=32)
    directory = DirectoryView(
        db, port, events, clock, pinned_key=pinned, list_max_age=settings.user_list_max_age
    )
    kdf = KdfParams.minimal() if settings.password_profile == "minimal" else KdfParams.interactive()
    accounts = AccountService(
        db,
        directory,
        keyring,
        make_hasher(settings.password_profile),
        clock,
        node_id=key.node_id,
        kdf=kdf,
        session_ttl=settings.session_ttl,
    )
    blocks = BlockService(db, clock)
    limits = RateLimits(
        RateSettings(
            messages_per_minute=settings.messages_per_minute,
            bytes_per_minute=settings.bytes_per_minute,
            file_bytes_per_hour=settings.file_bytes_per_hour,
            peer_requests_per_second=settings.peer_requests_per_second,
            logins_per_minute_per_address=settings.logins_per_minute_per_address,
            logins_per_minute_per_account=settings.logins_per_minute_per_account,
            login_free_failures=settings.login_free_failures,
            login_max_lockout=settings.login_max_lockout,
        ),
        clock,
    )
    messaging = MessagingService(
        db,
        directory,
        keyring,
        events,
        blocks,
        limits,
        clock,
        node_id=key.node_id,
        outbox_ttl=settings.outbox_ttl,
        waiting=WaitingSends(db, directory, keyring, events, clock, ttl=settings.outbox_ttl),
    )
    receiving = ReceivingService(
        db, directory, keyring, events, blocks, clock, outgoing=messaging, limits=limits
    )
    peers = HttpPeers(client)
    relay = RelayService(
        db,
        directory,
        peers,
        receiving,
        clock,
        node_id=key.node_id,
        offer=settings.relay,
        max_per_recipient=settings.relay_max_per_recipient,
        max_per_depositor=settings.relay_max_per_depositor,
        max_bytes_per_depositor=settings.relay_max_bytes_per_depositor,
        ttl=settings.relay_ttl,
        collect_interval=settings.relay_collect_interval,
    )
    delivery = DeliveryWorker(
        db,
        directory,
        peers,
        messaging,
        relay,
        clock,
        receiving=receiving,
        node_id=key.node_id,
        relay_after=settings.relay_after,
        concurrency=settings.delivery_concurrency,
        base_delay=settings.retry_base,
        max_delay=settings.retry_max,
    )
    messaging.on_queued(delivery.wake)

    async def after_login(username: str) -> None:
        await receiving.open_held(username)
        relay.collect_soon()
        messaging.waiting.wake()  # their first keys, or a sender's keys to seal waiting messages with

    accounts.on_unlock(after_login)
    presence = PresenceService(
        db,
        events,
        directory,
        peers,
        blocks,
        clock,
        node_id=key.node_id,
        interval=settings.presence_interval,
    )
    profiles = ProfileService(
        db, directory, peers, keyring, clock, node_id=key.node_id, fresh_for=settings.profile_fresh_for
    )
    search = SearchService(db, directory, profiles)
    blob_store = BlobStore(settings.blob_dir)
    files = FileService(
        db,
        blob_store,
        messaging,
        clock,
        node_id=key.node_id,
        limits=FileLimits(max_file_bytes=settings.max_file_bytes, quota_bytes=settings.storage_quota_bytes),
    )
    fetcher = FetchWorker(
        db,
        blob_store,
        files,
        directory,
        peers,
        events,
        clock,
        node_id=key.node_id,
        base_delay=settings.retry_base,
        max_delay=settings.retry_max,
        ttl=settings.outbox_ttl,
    )
    files.on_incoming(fetcher.wake)
    receiving.register_kind(FILE_KIND, files)  # a "file" envelope is stored by the file service
    amends = AmendService(db, messaging, files, events, clock, keep_for=settings.outbox_ttl)
    receiving.register_amends(amends)
    return Node(
        settings,
        key,
        db,
        client,
        events,
        keyring,
        directory,
        accounts,
        messaging,
        receiving,
        relay,
        delivery,
        presence,
        blocks,
        limits,
        profiles,
        search,
        files,
        fetcher,
        TypingService(
            directory, keyring, events, blocks, presence, receiving, peers, clock, node_id=key.node_id
        ),
        amends,
    )


def create_node_app(settings: NodeSettings, clock: Clock | None = None) -> FastAPI:
    clock = clock or SystemClock()
    node = build_node(settings, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await node.client.start()
        tasks = [
            asyncio.create_task(node.register_until_done()),
            asyncio.create_task(node.delivery.run()),
            asyncio.create_task(node.presence.run()),
            asyncio.create_task(node.events.run()),
            asyncio.create_task(node.relay.run()),
            asyncio.create_task(node.housekeeping()),
            asyncio.create_task(node.fetcher.run()),
            asyncio.create_task(node.messaging.waiting.run()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await node.typing.close()
            await node.client.close()
            await node.db.close()

    app = FastAPI(
        title="Flame Chat node API",
        telemetry=NO_TELEMETRY,
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/v1/docs",
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
        description=(
            "Local API (/api/v1, session cookie + CSRF) and federation API (/federation/v1, node signatures)."
        ),
    )
    app.state.node = node  # for tests and tooling only; routes get their services below
    install_error_handlers(app, not_found_page=not_found_page)
    cookie = cookie_name(node.key.node_id)
    app.include_router(
        api_router(
            accounts=node.accounts,
            directory=node.directory,
            messaging=node.messaging,
            events=node.events,
            blocks=node.blocks,
            limits=node.limits,
            files=node.files,
            typing=node.typing,
            amends=node.amends,
            node_id=node.key.node_id,
            cookie=cookie,
            session_ttl=int(settings.session_ttl),
        )
    )
    app.include_router(
        social_router(
            accounts=node.accounts,
            profiles=node.profiles,
            presence=node.presence,
            blocks=node.blocks,
            search=node.search,
            cookie=cookie,
        )
    )

    async def node_key(node_id: str) -> bytes | None:
        known = await node.directory.node(node_id)
        return None if known is None else known.public_key

    async def admit(node_id: str) -> None:
        await node.blocks.refuse_node(node_id)
        await node.limits.hit("peer", node_id)

    verifier = RequestVerifier(node_key, clock, admit=admit)

    app.include_router(files_router(accounts=node.accounts, files=node.files, cookie=cookie))
    app.include_router(blobs_router(node.files, node.directory, verifier, send_rate=settings.blob_send_rate))
    app.include_router(
        federation_router(node.receiving, node.relay, node.presence, node.profiles, node.typing, verifier)
    )
    app.include_router(
        page_router(
            accounts=node.accounts,
            directory=node.directory,
            profiles=node.profiles,
            presence=node.presence,
            blocks=node.blocks,
            messaging=node.messaging,
            node_id=node.key.node_id,
            cookie=cookie,
            node_url=settings.url,
            idle_away_seconds=settings.idle_away_seconds,
        )
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "node_id": node.key.node_id}

    app.add_middleware(SecurityHeaders, csp=CSP)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
        larger={"/api/v1/uploads/": PART_MAX_BYTES + 64 * 1024, "/api/v1/me/avatar": MAX_AVATAR_UPLOAD + 1},
    )
    return app
