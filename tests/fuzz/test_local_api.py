"""Fuzz the node's local API (``/api/v1``) from its own OpenAPI document.

The node runs in this process and is registered with a real directory, so a
logged-in session reaches the handlers and services behind the session check
(directory lookups, sending to a real user, search, profiles, blocks).
Invariant 6: whatever the input, the answer is never a 5xx, every error has
the one error shape, and every answer matches the document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.fuzz.conftest import NodeUnderTest, assert_error_shape, browser_session, node_schema

pytestmark = pytest.mark.fuzz

local = node_schema().include(path_regex=r"^/api/v1/")


@pytest.fixture(scope="module")
def alice(node_app: NodeUnderTest) -> Iterator[asgi.ASGIClient]:
    """alice, logged in; bob logs in once too, so his keys are published and he can be written to."""
    browser_session(node_app, "bob").close()
    client = browser_session(node_app, "alice")
    yield client
    client.close()


@pytest.fixture(scope="module")
def anonymous(node_app: NodeUnderTest) -> Iterator[asgi.ASGIClient]:
    client = asgi.ASGIClient(node_app.app, max_stream_events=1)
    yield client
    client.close()


def excluded_checks(case: Any) -> list[Any]:
    """Rules a schema cannot state, so schema-valid requests that break them are rightly refused (422)."""
    if case.path == "/api/v1/me/avatar":  # "bytes that decode as an image"
        return [positive_data_acceptance]
    if case.path == "/api/v1/blocks/{username}" and (case.path_parameters or {}).get("username") == "alice":
        return [positive_data_acceptance]  # "not yourself"
    return []


@local.parametrize()
def test_logged_in(case: Any, alice: asgi.ASGIClient, node_app: NodeUnderTest) -> None:
    response = case.call(session=alice)
    case.validate_response(response, headers=dict(alice.headers), excluded_checks=excluded_checks(case))
    assert_error_shape(response)
    if case.path == "/api/v1/sessions/current" and response.status_code == 204:
        # the fuzzer logged alice out: log in again so later cases still get past the session check;
        # its failed logins as "alice" may have started her login backoff, which is not under test here
        node_app.app.state.node.limits.logins.succeeded("alice")
        fresh = browser_session(node_app, "alice")
        alice.cookies.update(fresh.cookies)
        alice.headers.update(fresh.headers)
        fresh.close()


@local.parametrize()
def test_anonymous(case: Any, anonymous: asgi.ASGIClient) -> None:
    response = case.call(session=anonymous)
    case.validate_response(response, excluded_checks=excluded_checks(case))
    assert_error_shape(response)
    if case.path != "/api/v1/sessions":
        # nothing but logging in is open to someone without a session
        assert response.status_code in (401, 404, 405, 413, 422), (response.status_code, response.text)
