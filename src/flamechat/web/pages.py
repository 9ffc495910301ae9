"""Server-rendered pages (Jinja2). The live parts are in static/app.js."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from flamechat.protocol import errors
from flamechat.services.accounts import AccountService
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.web.api import user_view

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

# No inline script, no third-party anything: a page can only run our own files.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def page_router(
    *,
    accounts: AccountService,
    directory: DirectoryView,
    events: EventHub,
    node_id: str,
    cookie: str,
    node_url: str,
) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        return TEMPLATES.TemplateResponse(request, "login.html", {"node_url": node_url})

    @router.get("/", response_class=HTMLResponse)
    async def main_page(request: Request) -> Response:
        try:
            session = await accounts.authenticate(request.cookies.get(cookie))
        except errors.NotAuthenticated:
            return RedirectResponse("/login", status_code=303)
        cached = directory.reachable is False
        users = await directory.cached_users()
        connected = events.connected()
        return TEMPLATES.TemplateResponse(
            request,
            "main.html",
            {
                "me": session.username,
                "csrf_token": session.csrf_token,
                "users": [
                    user_view(u, connected=connected, node_id=node_id)
                    for u in users
                    if u.username != session.username
                ],
                "cached": cached,
                "node_url": node_url,
            },
        )

    return router
