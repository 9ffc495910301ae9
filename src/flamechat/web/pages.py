"""Server-rendered pages (Jinja2, autoescaped). The live parts are in static/*.js."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from flamechat.protocol import errors
from flamechat.protocol.ids import is_username
from flamechat.services.accounts import AccountService, Session
from flamechat.services.blocks import BlockService
from flamechat.services.directory_view import DirectoryView, shown_presence
from flamechat.services.messaging import MessagingService
from flamechat.services.presence import PresenceService
from flamechat.services.profiles import ProfileService
from flamechat.web.api import user_view

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

# No inline script, no third-party anything: a page can only run our own files.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def not_found_page(request: Request) -> Response:
    """What a browser shows for an address the node has no page at."""
    return TEMPLATES.TemplateResponse(request, "not_found.html", {}, status_code=404)


def page_router(
    *,
    accounts: AccountService,
    directory: DirectoryView,
    profiles: ProfileService,
    presence: PresenceService,
    blocks: BlockService,
    messaging: MessagingService,
    node_id: str,
    cookie: str,
    node_url: str,
    idle_away_seconds: float,
) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    async def signed_in(request: Request) -> Session | None:
        try:
            return await accounts.authenticate(request.cookies.get(cookie))
        except errors.NotAuthenticated:
            return None

    async def page(
        request: Request,
        template: str,
        build: Callable[[Session], Awaitable[dict[str, Any]]],
    ) -> Response:
        session = await signed_in(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        chosen = await presence.status_of(session.username)
        built = await build(session)
        context = {
            "me": session.username,
            "csrf_token": session.csrf_token,
            "my_status": chosen.status,
            "my_status_text": chosen.status_text,
            "idle_away_seconds": idle_away_seconds,
            "cached": directory.reachable is False,
            "node_url": node_url,
            **built,
        }
        status = 404 if built.get("not_found") else 200  # the page says so; the status too
        return TEMPLATES.TemplateResponse(request, template, context, status_code=status)

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        if await signed_in(request) is not None:
            return RedirectResponse("/", status_code=303)  # already in: nothing to do here
        return TEMPLATES.TemplateResponse(request, "login.html", {"node_url": node_url})

    @router.get("/", response_class=HTMLResponse)
    async def main_page(request: Request) -> Response:
        async def build(session: Session) -> dict[str, Any]:
            mine = set(await blocks.blocked_by(session.username))
            unread = await messaging.unread(session.username)
            changed = await directory.key_warnings(session.username)
            verified = await directory.verified(session.username)
            users = [
                user_view(
                    u,
                    viewer=session.username,
                    node_id=node_id,
                    blocked=u.username in mine,
                    unread=unread.get(u.username, 0),
                    keys_changed=changed.get(u.username),
                    verified=u.username in verified,
                )
                for u in await directory.cached_users()
                if u.username != session.username
            ]
            return {"users": users}

        return await page(request, "main.html", build)

    @router.get("/profile/{username}", response_class=HTMLResponse)
    async def profile_page(request: Request, username: str) -> Response:
        async def build(session: Session) -> dict[str, Any]:
            if not is_username(username):  # no one can be called that: no lookup, and a page not JSON
                return {"profile": None, "username": username[:64], "own": False, "not_found": True}
            try:
                profile = await profiles.view(username)
            except errors.UnknownUser:
                profile = None
            shown: dict[str, Any] = {"status": "offline", "status_text": ""}
            safety = None
            if profile is not None:
                with contextlib.suppress(errors.FlameError):
                    shown = shown_presence(await directory.resolve(username), session.username)
                if username != session.username:
                    with contextlib.suppress(errors.FlameError):  # no keys yet: nothing to compare
                        safety = await messaging.safety_number(session.username, username)
            changed = (await directory.key_warnings(session.username)).get(username)
            return {
                "safety_number": safety,
                "keys_changed": changed is not None,
                "verified": username in await directory.verified(session.username),
                "profile": profile,
                "presence": shown,
                "username": username,
                "own": username == session.username,
                "blocked": await blocks.is_blocked(session.username, username),
                "not_found": profile is None,
            }

        return await page(request, "profile.html", build)

    @router.get("/blocks", response_class=HTMLResponse)
    async def blocks_page(request: Request) -> Response:
        async def build(session: Session) -> dict[str, Any]:
            return {"blocked": await blocks.blocked_by(session.username)}

        return await page(request, "blocks.html", build)

    return router
