"""The local API the browser (or a CLI) uses, ``/api/v1``."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sse_starlette.sse import EventSourceResponse

from flamechat.protocol import errors, models
from flamechat.protocol.ids import USERNAME_PATTERN
from flamechat.services.accounts import AccountService, Session
from flamechat.services.amends import AmendService
from flamechat.services.blocks import BlockService
from flamechat.services.directory_view import DirectoryView, shown_presence
from flamechat.services.events import ENDED, EventHub
from flamechat.services.files import FileService
from flamechat.services.messaging import MessagingService
from flamechat.services.ratelimit import RateLimits
from flamechat.services.typing import TypingService
from flamechat.services.waiting import has_keys
from flamechat.storage.records import KeyWarning, KnownUser
from flamechat.web.markup import with_html
from flamechat.web.security import check_origin, session_dependencies, set_session_cookie

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.ErrorBody, "description": "not logged in / wrong password"},
    403: {"model": models.ErrorBody, "description": "CSRF check failed, or not allowed"},
    404: {"model": models.ErrorBody, "description": "unknown user"},
    409: {"model": models.ErrorBody, "description": "recipient not ready, or credentials differ"},
    413: {"model": models.ErrorBody, "description": "message over 64 KiB"},
    422: {"model": models.ErrorBody, "description": "malformed input"},
    429: {"model": models.ErrorBody, "description": "rate limited; see Retry-After"},
    503: {
        "model": models.ErrorBody,
        "description": "the directory is unreachable and nothing cached answers",
    },
}

MESSAGE_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# A user named in a path: bounded and well formed before any lookup or write (invariant 6).
SHUTDOWN = "_shutdown"  # internal to the events endpoint, never sent

UserName = Annotated[str, Path(pattern=USERNAME_PATTERN, examples=["bob"])]
MessageId = Annotated[
    str, Path(pattern=MESSAGE_ID_PATTERN, examples=["0f3c2a9e-5b1d-4c8e-9a7f-2d6b8e1c4f00"])
]
# A tab's id, chosen by the page (a UUID); only ever compared with that user's tabs.
TAB_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
TabId = Annotated[str, Path(pattern=TAB_PATTERN, examples=["0f3c2a9e-5b1d-4c8e-9a7f-2d6b8e1c4f00"])]


def user_view(
    user: KnownUser,
    *,
    viewer: str,
    node_id: str,
    blocked: bool = False,
    unread: int = 0,
    keys_changed: KeyWarning | None = None,
    verified: bool = False,
) -> dict[str, Any]:
    """A user as ``viewer`` may see them (status hidden if they block the viewer)."""
    return {
        "unread": unread,
        "verified": verified,
        "keys_changed_at": None if keys_changed is None else keys_changed.changed_at,
        **shown_presence(user, viewer),
        "title": user.title,
        "department": user.department,
        "node_url": user.node_url,
        "local": user.home_node == node_id,
        "blocked": blocked,
        "has_keys": has_keys(user),  # signed in once
    }


def api_router(
    *,
    accounts: AccountService,
    directory: DirectoryView,
    messaging: MessagingService,
    events: EventHub,
    blocks: BlockService,
    limits: RateLimits,
    files: FileService,
    typing: TypingService,
    amends: AmendService,
    node_id: str,
    cookie: str,
    session_ttl: int,
) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["local"], responses=ERRORS)
    reading, writing = session_dependencies(accounts, cookie)
    Reader = Annotated[Session, Depends(reading)]
    Writer = Annotated[Session, Depends(writing)]

    @router.post("/sessions", response_model=models.SessionInfo, status_code=201)
    async def login(body: models.LoginRequest, request: Request, response: Response) -> dict[str, Any]:
        check_origin(request)
        await limits.hit("login-address", request.client.host if request.client else "unknown")
        await limits.hit("login-account", body.username)
        limits.logins.check(body.username)
        try:
            result = await accounts.login(body.username, body.password)
        except errors.InvalidCredentials:
            limits.logins.failed(body.username)
            raise
        limits.logins.succeeded(body.username)
        set_session_cookie(response, request, cookie, result.token, session_ttl)
        return {
            "username": result.session.username,
            "csrf_token": result.session.csrf_token,
            "directory": "online" if result.directory_online else "offline",
        }

    @router.delete("/sessions/current", status_code=204)
    async def logout(session: Writer, response: Response) -> None:
        await accounts.logout(session)
        events.end_session(session.username, session.lookup_id)  # its open streams stop now
        response.delete_cookie(cookie, path="/")

    @router.get("/me", response_model=models.SessionInfo)
    async def me(session: Reader) -> dict[str, Any]:
        return {
            "username": session.username,
            "csrf_token": session.csrf_token,
            "directory": "offline" if directory.reachable is False else "online",
        }

    @router.get("/users", response_model=models.UserList)
    async def users(session: Reader) -> dict[str, Any]:
        source = "directory"
        try:
            listed = await directory.users()
        except (errors.DirectoryUnavailable, errors.ServiceUnavailable):
            listed, source = await directory.cached_users(), "cache"
        mine = set(await blocks.blocked_by(session.username))
        unread = await messaging.unread(session.username)
        changed = await directory.key_warnings(session.username)
        verified = await directory.verified(session.username)
        return {
            "users": [
                user_view(
                    u,
                    viewer=session.username,
                    node_id=node_id,
                    blocked=u.username in mine,
                    unread=unread.get(u.username, 0),
                    keys_changed=changed.get(u.username),
                    verified=u.username in verified,
                )
                for u in listed
            ],
            "source": source,
            "fetched_at": directory.last_list_at if source == "directory" else None,
        }

    @router.get("/users/{username}", response_model=models.UserView)
    async def user(username: UserName, session: Reader) -> dict[str, Any]:
        blocked = await blocks.is_blocked(session.username, username)
        changed = (await directory.key_warnings(session.username)).get(username)
        return user_view(
            await directory.resolve(username),
            viewer=session.username,
            node_id=node_id,
            blocked=blocked,
            keys_changed=changed,
            verified=username in await directory.verified(session.username),
        )

    @router.get("/users/{username}/safety-number", response_model=models.SafetyNumber)
    async def safety(username: UserName, session: Reader) -> dict[str, Any]:
        """Sixty digits both people see alike while each node holds the other's real keys."""
        return {
            "username": username,
            "safety_number": await messaging.safety_number(session.username, username),
        }

    @router.put("/users/{username}/verified", response_model=models.Verified)
    async def verify(username: UserName, body: models.MarkVerified, session: Writer) -> dict[str, Any]:
        """We compared our safety number: mark this user verified (while their keys stay)."""
        await messaging.verify_contact(session.username, username, body.safety_number)
        return {"username": username, "verified": True}

    @router.delete("/users/{username}/verified", response_model=models.Verified)
    async def unverify(username: UserName, session: Writer) -> dict[str, Any]:
        await directory.mark_verified(session.username, username, None)
        return {"username": username, "verified": False}

    @router.post("/users/{username}/keys/confirm", response_model=models.KeysConfirmed)
    async def confirm_keys(username: UserName, session: Writer) -> dict[str, Any]:
        """The viewer checked ``username``'s new keys with them: writing to them resumes."""
        await directory.confirm_keys(session.username, username)
        return {"username": username, "confirmed": True}

    @router.get("/conversations/{peer}/messages", response_model=models.MessagePage)
    async def history(
        peer: UserName,
        session: Reader,
        before: Annotated[
            str | None,
            Query(pattern=r"^[0-9]{1,16}\.[0-9]{1,18}$", description="cursor from next_cursor"),
        ] = None,
        after: Annotated[
            str | None,
            Query(pattern=r"^[0-9]{1,16}\.[0-9]{1,18}$", description="newer than this cursor"),
        ] = None,
        around: Annotated[
            str | None, Query(pattern=MESSAGE_ID_PATTERN, description="a message id to center the page on")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        rows, next_cursor, newer = await messaging.history(
            session.username, peer, before=before, after=after, around=around, limit=limit
        )
        if not rows and before is None and after is None and around is None:
            # No history with them at all: a conversation with no one is 404, like sending to no one.
            with contextlib.suppress(errors.DirectoryUnavailable, errors.ServiceUnavailable):
                await directory.resolve(peer)  # UnknownUser if the directory has no such user
        views = await messaging.views(session.username, rows)
        return {
            "messages": await files.decorate(session.username, [with_html(v) for v in views]),
            "next_cursor": next_cursor,
            "newer_cursor": newer,
        }

    @router.post("/conversations/{peer}/messages", response_model=models.MessageView, status_code=201)
    async def send(peer: UserName, body: models.SendMessage, session: Writer) -> dict[str, Any]:
        record = await messaging.send(session.username, peer, body.body, body.id, body.reply_to)
        return with_html(await messaging.view(record))

    @router.patch("/conversations/{peer}/messages/{message_id}", response_model=models.MessageView)
    async def edit(
        peer: UserName, message_id: MessageId, body: models.EditMessage, session: Writer
    ) -> dict[str, Any]:
        """Edit one's own text message: the recipient's copy changes too (an ``amend``
        envelope, sealed like a message)."""
        record = await amends.edit(session.username, peer, message_id, body.body)
        return with_html(await messaging.view(record))

    @router.delete("/conversations/{peer}/messages/{message_id}", status_code=204)
    async def delete(
        peer: UserName,
        message_id: MessageId,
        session: Writer,
        everyone: Annotated[
            bool,
            Query(description="delete one's own message for the recipient too, not only from one's history"),
        ] = False,
    ) -> None:
        if everyone:
            await amends.delete_for_everyone(session.username, peer, message_id)
        else:
            await amends.delete_for_me(session.username, peer, message_id)

    @router.post("/conversations/{peer}/read", response_model=models.ReadMarked)
    async def mark_read(peer: UserName, body: models.MarkRead, session: Writer) -> dict[str, Any]:
        return {"marked": await messaging.mark_read(session.username, peer, body.up_to)}

    @router.post("/conversations/{peer}/typing", response_model=models.TypingSent)
    async def typing_to(peer: UserName, session: Writer) -> dict[str, Any]:
        """The user is typing to ``peer``: a page sends this every few seconds while they
        type. ``sent`` is false when nothing went (too soon, appearing offline, blocked)."""
        return {"sent": await typing.typing(session.username, peer)}

    @router.put("/me/tabs/{tab}", response_model=models.TabAlive)
    async def tab_alive(
        tab: TabId,
        session: Writer,
        via: Annotated[
            Literal["poll", "stream"],
            Query(description="stream: the beat answers the tab's stream, and opens no polling lease"),
        ] = "poll",
    ) -> dict[str, Any]:
        """A tab's heartbeat: its stream's ``alive`` events are answered with it, and a
        tab that polls (no stream) sends it on a timer. A tab not heard from for
        ``timeout`` seconds is closed, and its user offline if it was their last."""
        is_open = events.heartbeat(session.username, tab, session=session.lookup_id, stream=via == "stream")
        return {"tab": tab, "timeout": events.tab_timeout, "open": is_open}

    @router.delete("/me/tabs/{tab}", status_code=204)
    async def tab_closed(tab: TabId, session: Writer) -> None:
        """A polling tab is closing (a stream's closing connection says it by itself)."""
        events.close_tab(session.username, tab)

    @router.get("/events", response_class=EventSourceResponse)
    async def stream(
        session: Reader,
        request: Request,
        tab: Annotated[
            str | None, Query(pattern=TAB_PATTERN, description="the tab's own id, for its heartbeats")
        ] = None,
    ) -> EventSourceResponse:
        sub = events.subscribe(session.username, tab, session=session.lookup_id)
        # Set by sse-starlette when the server shuts down: the feed then ends by
        # itself, so the response completes instead of being cancelled midway
        # (which uvicorn logs as an error at every restart of a node in use).
        shutdown = anyio.Event()

        async def end_on_shutdown() -> None:
            await shutdown.wait()
            with contextlib.suppress(asyncio.QueueEmpty):
                if sub.queue.full():
                    sub.queue.get_nowait()
            sub.queue.put_nowait({"type": SHUTDOWN})

        async def feed() -> AsyncIterator[dict[str, str]]:
            loop = asyncio.get_running_loop()
            watcher = loop.create_task(end_on_shutdown())
            try:
                status = "offline" if directory.reachable is False else "online"
                yield {"event": "directory", "data": json.dumps({"type": "directory", "status": status})}
                # The tab answers each "alive" with a heartbeat: a client that vanished
                # without closing the connection stops answering, and is dropped.
                alive = json.dumps({"type": "alive", "tab": sub.tab, "timeout": events.tab_timeout})
                yield {"event": "alive", "data": alive}
                next_alive = loop.time() + events.alive_every
                while True:
                    wait = next_alive - loop.time()
                    if wait <= 0:
                        if sub.ended or await request.is_disconnected():
                            return
                        yield {"event": "alive", "data": alive}
                        next_alive = loop.time() + events.alive_every
                        continue
                    try:
                        event = await asyncio.wait_for(sub.queue.get(), timeout=wait)
                    except TimeoutError:
                        continue
                    if event.get("type") in (SHUTDOWN, ENDED):
                        return
                    if event.get("type") in ("message", "message_changed"):
                        shown = await files.decorate(session.username, [with_html(event["message"])])
                        event = {**event, "message": shown[0]}
                    yield {"event": str(event.get("type", "message")), "data": json.dumps(event)}
            finally:
                watcher.cancel()
                events.unsubscribe(sub)

        return EventSourceResponse(feed(), ping=10, shutdown_event=shutdown, shutdown_grace_period=2.0)

    return router
