"""Canonical JSON and base64 helpers shared by every signed structure."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flamechat.crypto.errors import MalformedError


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` deterministically: sorted keys, no spaces, UTF-8.

    Signed structures only hold strings, integers, booleans, null, lists and
    objects (never floats), so this encoding is stable across implementations.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64encode(data: bytes) -> str:
    """Standard base64 (RFC 4648 section 4) with padding."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, size: int | None = None, what: str = "value") -> bytes:
    """Strict base64 decoding; ``size`` (if given) is the exact decoded length."""
    if not isinstance(text, str):
        raise MalformedError(f"{what} must be a base64 string")
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedError(f"{what} is not valid base64") from exc
    if size is not None and len(data) != size:
        raise MalformedError(f"{what} must decode to {size} bytes, got {len(data)}")
    return data
