"""Local API for the social half: profiles, status, blocks, search."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from flamechat.protocol import errors, models
from flamechat.protocol.ids import USERNAME_PATTERN
from flamechat.services.accounts import AccountService, Session
from flamechat.services.blocks import BlockService
from flamechat.services.presence import PresenceService
from flamechat.services.profiles import MAX_AVATAR_UPLOAD, ProfileService
from flamechat.services.search import SearchService
from flamechat.web.api import ERRORS, UserName
from flamechat.web.markup import with_html
from flamechat.web.security import session_dependencies


def social_router(
    *,
    accounts: AccountService,
    profiles: ProfileService,
    presence: PresenceService,
    blocks: BlockService,
    search: SearchService,
    cookie: str,
) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["local"], responses=ERRORS)
    reading, writing = session_dependencies(accounts, cookie)
    Reader = Annotated[Session, Depends(reading)]
    Writer = Annotated[Session, Depends(writing)]

    # --- status ----------------------------------------------------------------------

    @router.get("/me/status", response_model=models.StatusView)
    async def my_status(session: Reader) -> dict[str, Any]:
        chosen = await presence.status_of(session.username)
        return {"status": chosen.status, "status_text": chosen.status_text}

    @router.put("/me/status", response_model=models.StatusView)
    async def set_status(body: models.SetStatus, session: Writer) -> dict[str, Any]:
        chosen = await presence.set_status(session.username, body.status, body.status_text)
        return {"status": chosen.status, "status_text": chosen.status_text}

    # --- profiles --------------------------------------------------------------------

    @router.get("/users/{username}/profile", response_model=models.ProfileView)
    async def profile(username: UserName, session: Reader) -> dict[str, Any]:
        view = await profiles.view(username)
        return {**view, "blocked": await blocks.is_blocked(session.username, username)}

    @router.put("/me/profile", response_model=models.ProfileView)
    async def edit_profile(body: models.EditProfile, session: Writer) -> dict[str, Any]:
        return {**await profiles.update(session.username, body.model_dump()), "blocked": False}

    @router.put(
        "/me/avatar",
        response_model=models.ProfileView,
        openapi_extra={
            "requestBody": {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}
        },
    )
    async def upload_avatar(request: Request, session: Writer) -> dict[str, Any]:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_AVATAR_UPLOAD:
                raise errors.PayloadTooLarge("avatars are limited to 5 MiB", field="avatar")
        return {**await profiles.update(session.username, {}, avatar=bytes(data)), "blocked": False}

    @router.get(
        "/users/{username}/avatar", response_class=Response, responses={200: {"content": {"image/png": {}}}}
    )
    async def avatar(username: UserName, session: Reader) -> Response:
        data = await profiles.cached_avatar(username)
        return Response(
            data,
            media_type="image/png",
            headers={
                "Cache-Control": "private, max-age=60",
                "Content-Disposition": "inline; filename=avatar.png",
            },
        )

    # --- blocks ----------------------------------------------------------------------

    @router.get("/blocks", response_model=models.BlockList)
    async def block_list(session: Reader) -> dict[str, Any]:
        return {"blocked": await blocks.blocked_by(session.username)}

    @router.put("/blocks/{username}", response_model=models.BlockList)
    async def block(username: UserName, session: Writer) -> dict[str, Any]:
        await blocks.block(session.username, username)
        presence.changed()
        return {"blocked": await blocks.blocked_by(session.username)}

    @router.delete("/blocks/{username}", response_model=models.BlockList)
    async def unblock(username: UserName, session: Writer) -> dict[str, Any]:
        await blocks.unblock(session.username, username)
        presence.changed()
        return {"blocked": await blocks.blocked_by(session.username)}

    # --- search ----------------------------------------------------------------------

    @router.get("/search", response_model=models.SearchResults)
    async def find(
        session: Reader,
        q: Annotated[str, Query(min_length=1, max_length=200)],
        peer: Annotated[str | None, Query(pattern=USERNAME_PATTERN)] = None,
        since: Annotated[int | None, Query(ge=0, le=2**53, description="ms since the epoch")] = None,
        until: Annotated[int | None, Query(ge=0, le=2**53, description="ms since the epoch")] = None,
        limit: Annotated[int, Query(ge=1, le=50)] = 20,
    ) -> dict[str, Any]:
        people = await search.people(q)
        hits = await search.messages(session.username, q, peer=peer, since=since, until=until, limit=limit)
        return {
            "people": people,
            "messages": [{"message": with_html(h["message"]), "snippet": h["snippet"]} for h in hits],
        }

    return router
