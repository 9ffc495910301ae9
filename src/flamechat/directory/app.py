"""The directory's HTTP API, ``/directory/v1``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Request

from flamechat import __version__
from flamechat.config import DirectorySettings
from flamechat.crypto import b64decode, b64encode, parse_json
from flamechat.crypto.errors import MalformedError
from flamechat.httpapi.app_options import NO_TELEMETRY
from flamechat.httpapi.errors import install_error_handlers
from flamechat.httpapi.limits import BodySizeLimit
from flamechat.httpapi.signed import RequestVerifier, json_body
from flamechat.keyfile import load_or_create_key
from flamechat.protocol import models
from flamechat.protocol.errors import BadNodeSignature
from flamechat.protocol.ids import NODE_ID_PATTERN, USERNAME_PATTERN
from flamechat.protocol.versions import FEATURES, PROTOCOL_VERSIONS
from flamechat.services.clock import Clock, SystemClock
from flamechat.services.directory import DirectoryService
from flamechat.services.login_checks import LoginChecks, LoginCheckSettings
from flamechat.services.passwords import make_hasher
from flamechat.services.ratelimit import NodeRequests
from flamechat.storage.database import Database, migrate, sqlite_url
from flamechat.storage.records import PresenceEntry

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.ErrorBody, "description": "unsigned, badly signed, unknown node or replay"},
    403: {"model": models.ErrorBody, "description": "not this node's to change, or wrong home node"},
    404: {"model": models.ErrorBody, "description": "no such user or node"},
    413: {"model": models.ErrorBody, "description": "request body over 64 KiB"},
    422: {"model": models.ErrorBody, "description": "malformed input"},
    429: {
        "model": models.ErrorBody,
        "description": "too many requests from this node, or password checks; see Retry-After",
    },
}

# Names in paths are checked like the same names in bodies, before any signature work or lookup.
UserPath = Annotated[str, Path(pattern=USERNAME_PATTERN)]
NodePath = Annotated[str, Path(pattern=NODE_ID_PATTERN)]


def open_directory(settings: DirectorySettings, clock: Clock | None = None) -> DirectoryService:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(sqlite_url(settings.database_path, driver="pysqlite"), "directory")
    return DirectoryService(
        Database(sqlite_url(settings.database_path)),
        load_or_create_key(settings.key_path),
        make_hasher(settings.password_profile),
        clock or SystemClock(),
        presence_ttl=settings.presence_ttl,
        open_registration=settings.open_registration,
        login_checks=LoginChecks(
            LoginCheckSettings(
                per_node_per_minute=settings.login_checks_per_minute_per_node,
                per_account_per_minute=settings.login_checks_per_minute_per_account,
            )
        ),
    )


def directory_router(service: DirectoryService, verifier: RequestVerifier) -> APIRouter:
    router = APIRouter(prefix="/directory/v1", responses=ERRORS)

    @router.get("/version", response_model=models.VersionInfo)
    async def version() -> dict[str, Any]:
        return {
            "software": f"flamechat-directory/{__version__}",
            "versions": list(PROTOCOL_VERSIONS),
            "features": list(FEATURES),
        }

    @router.get("/key", response_model=models.DirectoryKey)
    async def key() -> dict[str, str]:
        return {"public_key": b64encode(service.key.public_key)}

    # Bodies are parsed only once the signature over their raw bytes holds (httpapi/signed.py).

    @router.put(
        "/nodes/{node_id}", response_model=models.SignedNode, openapi_extra=json_body(models.NodeRegistration)
    )
    async def register_node(node_id: NodePath, request: Request) -> dict[str, Any]:
        public_key = _claimed_key(await request.body())
        signer, body = await verifier.verify_body(request, models.NodeRegistration, public_key=public_key)
        if signer != node_id:
            raise BadNodeSignature("a node may only register itself")
        return await service.register_node(node_id, body.url, body.public_key, relay=body.relay)

    @router.get("/nodes", response_model=models.SignedNodeList)
    async def list_nodes(request: Request) -> dict[str, Any]:
        await verifier.verify(request)
        return await service.nodes()

    @router.get("/nodes/{node_id}", response_model=models.SignedNode)
    async def get_node(node_id: NodePath, request: Request) -> dict[str, Any]:
        await verifier.verify(request)
        return await service.node_record(node_id)

    @router.put("/nodes/{node_id}/presence", status_code=204, openapi_extra=json_body(models.PresenceReport))
    async def presence(node_id: NodePath, request: Request) -> None:
        signer, body = await verifier.verify_body(request, models.PresenceReport)
        if signer != node_id:
            raise BadNodeSignature("a node may only report its own presence")
        entries = [
            PresenceEntry(u.username, u.status, u.status_text, tuple(u.hidden_from)) for u in body.users
        ]
        await service.report_presence(node_id, entries)

    @router.post("/logins", response_model=models.SignedLogin, openapi_extra=json_body(models.LoginCheck))
    async def check_login(request: Request) -> dict[str, Any]:
        node_id, body = await verifier.verify_body(request, models.LoginCheck)
        return await service.check_login(node_id, body.username, body.password)

    @router.put(
        "/users/{username}/keys",
        response_model=models.SignedUser,
        openapi_extra=json_body(models.PublishKeys),
    )
    async def publish_keys(username: UserPath, request: Request) -> dict[str, Any]:
        node_id, body = await verifier.verify_body(request, models.PublishKeys)
        return await service.publish_keys(
            node_id, username, body.sign_key, body.box_key, body.binding_signature
        )

    @router.put(
        "/users/{username}/card", response_model=models.SignedUser, openapi_extra=json_body(models.UserCard)
    )
    async def set_card(username: UserPath, request: Request) -> dict[str, Any]:
        node_id, body = await verifier.verify_body(request, models.UserCard)
        return await service.set_card(
            node_id, username, display_name=body.display_name, title=body.title, department=body.department
        )

    @router.get("/users", response_model=models.SignedUserList)
    async def users(request: Request) -> dict[str, Any]:
        node_id = await verifier.verify(request)
        return await service.users(asking_node=node_id)

    @router.get("/users/{username}", response_model=models.SignedUser)
    async def user(username: UserPath, request: Request) -> dict[str, Any]:
        node_id = await verifier.verify(request)
        return await service.user(username, asking_node=node_id)

    return router


def _claimed_key(raw: bytes) -> bytes:
    """The key a registering node names in its body: the one its signature must verify with."""
    try:
        claimed = parse_json(raw)
    except ValueError:
        claimed = None
    value = claimed.get("public_key") if isinstance(claimed, dict) else None
    try:
        return b64decode(value if isinstance(value, str) else "", size=32, what="public_key")
    except MalformedError as exc:
        raise BadNodeSignature(f"no key to check the signature with: {exc}") from exc


def create_directory_app(settings: DirectorySettings, clock: Clock | None = None) -> FastAPI:
    clock = clock or SystemClock()
    service = open_directory(settings, clock)
    # Every signed request counts against its node's rate, once the signature holds.
    verifier = RequestVerifier(
        service.node_public_key, clock, admit=NodeRequests(settings.requests_per_second_per_node).admit
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await service.db.close()

    app = FastAPI(
        title="Flame Chat directory API",
        telemetry=NO_TELEMETRY,
        version=__version__,
        lifespan=lifespan,
        docs_url="/directory/v1/docs",
        openapi_url="/directory/v1/openapi.json",
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(directory_router(service, verifier))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodySizeLimit, max_bytes=64 * 1024)
    return app
