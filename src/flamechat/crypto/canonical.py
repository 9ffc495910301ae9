"""Canonical JSON and base64 helpers shared by every signed structure."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flamechat.crypto.errors import MalformedError

# No structure of the protocol nests deeper than a handful of levels. Python's
# parser recurses per level (RecursionError, not ValueError, past ~1000), and so
# does much of what handles a parsed value afterwards: bound it where it enters.
MAX_JSON_DEPTH = 32


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


def parse_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for bytes from outside: ``ValueError`` for anything that is
    not JSON, including arrays and objects nested more than ``max_depth`` deep,
    never ``RecursionError`` (which a thousand ``[`` would raise)."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    # Iterative, so that checking the depth cannot itself recurse.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise ValueError(f"JSON nested more than {max_depth} deep")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value
