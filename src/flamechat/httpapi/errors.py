"""One error shape for every API: ``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from flamechat.protocol import errors

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    error.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse({"error": error}, status_code=status)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or str(loc[0] if loc else "body")


async def _flame_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.FlameError)
    response = JSONResponse(exc.to_body(), status_code=exc.status)
    retry_after = exc.details.get("retry_after")
    if retry_after is not None:
        response.headers["Retry-After"] = str(int(retry_after))
    return response


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    first = problems[0] if problems else {"loc": ("body",), "msg": "invalid request"}
    field = _field(tuple(first.get("loc", ("body",))))
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        field, message = "body", "the body is not valid JSON"
    details = {
        "problems": [
            {"field": _field(tuple(p.get("loc", ()))), "message": str(p.get("msg"))} for p in problems[:20]
        ]
    }
    return error_response(422, "invalid_request", f"{field}: {message}", field=field, details=details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    flame = _flame_cause(exc.__cause__)
    if flame is not None:
        # FastAPI wraps what fails while it reads the body (e.g. the size limit) in a bare 400
        return await _flame_error(request, flame)
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        # a body FastAPI could not decode (not UTF-8, say) is malformed JSON like any other
        return error_response(422, "invalid_request", "body: the body is not valid JSON", field="body")
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    response = error_response(exc.status_code, code, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(_allowed_methods(request, response.headers.get("Allow", "")))
    return response


def _flame_cause(cause: BaseException | None) -> errors.FlameError | None:
    """The FlameError behind a wrapped failure, also through the one-error groups of task groups."""
    if isinstance(cause, errors.FlameError):
        return cause
    if isinstance(cause, BaseExceptionGroup) and len(cause.exceptions) == 1:
        return _flame_cause(cause.exceptions[0])
    return None


_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"})


@functools.lru_cache(maxsize=512)
def _path_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}/]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def _allowed_methods(request: Request, named: str) -> list[str]:
    """Every method the path answers to: the router names only the first route whose path matched."""
    allowed = {m.strip().upper() for m in named.split(",") if m.strip()}
    paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    for template, operations in paths.items():
        if _path_pattern(template).fullmatch(request.scope["path"]):
            allowed |= {m.upper() for m in operations} & _METHODS
    return sorted(allowed)


async def _client_gone(request: Request, _exc: Exception) -> JSONResponse:
    """The caller hung up while its body was being read (a peer killed mid-request):
    nothing failed here, and no one is left to read the answer."""
    log.info("client went away during %s %s", request.method, request.url.path)
    return error_response(400, "bad_request", "the request ended before its body did")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "something went wrong on this server")


API_PREFIXES = ("/api/", "/federation/", "/directory/", "/static/")


def wants_page(request: Request) -> bool:
    """A browser asking to show an address (not an API call, a script or a file)."""
    return (
        request.method == "GET"
        and not request.url.path.startswith(API_PREFIXES)
        and "text/html" in request.headers.get("accept", "")
    )


def install_error_handlers(
    app: FastAPI, *, not_found_page: Callable[[Request], Response] | None = None
) -> None:
    """One error shape for every API; ``not_found_page`` answers a browser that
    asks for an address the server has no page at (instead of the JSON error)."""

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404 and not_found_page is not None and wants_page(request):
            return not_found_page(request)
        return await _http_error(request, exc)

    app.add_exception_handler(errors.FlameError, _flame_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
