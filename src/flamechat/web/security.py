"""Session cookie and CSRF checks as FastAPI dependencies."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import Request, Response

from flamechat.protocol import errors
from flamechat.services.accounts import AccountService, Session

CSRF_HEADER = "X-CSRF-Token"


def cookie_name(node_id: str) -> str:
    """Per-node cookie name: browsers share cookies across ports of one host."""
    return f"flame_session_{node_id[:12]}"


def set_session_cookie(response: Response, request: Request, name: str, token: str, max_age: int) -> None:
    response.set_cookie(
        name,
        token,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def check_origin(request: Request) -> None:
    """Refuse cross-site state changes that arrive before a session exists (login CSRF)."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise errors.CsrfFailed("cross-origin request refused")


SessionDep = Callable[[Request], Awaitable[Session]]


def session_dependencies(accounts: AccountService, name: str) -> tuple[SessionDep, SessionDep]:
    """(reading, writing): writing also requires the CSRF header."""

    async def reading(request: Request) -> Session:
        return await accounts.authenticate(request.cookies.get(name))

    async def writing(request: Request) -> Session:
        session = await reading(request)
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise errors.CsrfFailed(f"missing or wrong {CSRF_HEADER} header")
        check_origin(request)
        return session

    return reading, writing
