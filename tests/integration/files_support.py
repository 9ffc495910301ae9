"""Uploading and downloading files through a node's local API, as the browser does."""

from __future__ import annotations

import http.client
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support import ApiSession, eventually

PART = 8 * 1024 * 1024


def raw_request(
    session: ApiSession,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = 60.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request with the session's cookie (and CSRF token); the whole answer."""
    parts = urlsplit(session.node.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        sent = {"Cookie": session.cookie, "X-CSRF-Token": session.csrf, **(headers or {})}
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def start_upload(
    session: ApiSession, peer: str, name: str, size: int, mime: str
) -> tuple[int, dict[str, Any]]:
    upload_id = str(uuid.uuid4())
    return session.call(
        "POST",
        f"/api/v1/conversations/{peer}/uploads",
        {"id": upload_id, "name": name, "size": size, "type": mime},
    )


def patch(session: ApiSession, upload_id: str, offset: int, data: bytes) -> tuple[int, dict[str, Any]]:
    status, _, raw = raw_request(
        session,
        "PATCH",
        f"/api/v1/uploads/{upload_id}",
        data,
        {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
    )
    return status, json.loads(raw)


def send_file(
    session: ApiSession, peer: str, data: bytes, *, name: str = "file.bin", mime: str = "", part: int = PART
) -> dict[str, Any]:
    """Upload ``data`` in parts of ``part`` bytes; return the sent file message."""
    status, state = start_upload(session, peer, name, len(data), mime or "application/octet-stream")
    assert status == 201, state
    for _ in range(len(data) // 1024 + 4):  # bounded: every round moves the offset
        if state["complete"]:
            break
        offset = state["received"]
        status, state = patch(session, state["id"], offset, data[offset : offset + part])
        assert status == 200, state
    assert state["complete"], state
    message: dict[str, Any] = state["message"]
    return message


def file_message(session: ApiSession, peer: str, message_id: str) -> dict[str, Any] | None:
    for message in session.history(peer):
        if message["id"] == message_id:
            return message
    return None


def wait_file_state(
    session: ApiSession, peer: str, message_id: str, state: str = "ready", timeout: float = 60.0
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        message = file_message(session, peer, message_id)
        return message if message and message.get("file", {}).get("state") == state else None

    return eventually(check, timeout=timeout, interval=0.2, what=f"file {message_id} {state}")


def download(
    session: ApiSession, message_id: str, headers: dict[str, str] | None = None, query: str = ""
) -> tuple[int, dict[str, str], bytes]:
    return raw_request(session, "GET", f"/api/v1/files/{message_id}{query}", headers=headers)


def blob_files(data_dir: Path) -> list[Path]:
    """The complete blobs a node holds (``blobs/<2 hex>/<64 hex>``)."""
    return sorted(p for p in (data_dir / "blobs").glob("??/*") if p.is_file())
