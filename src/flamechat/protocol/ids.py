"""Identifiers: UUIDv7 for envelopes, usernames, and their checks."""

from __future__ import annotations

import re
import uuid

import uuid_utils

USERNAME_PATTERN = r"^[a-z][a-z0-9_.-]{1,31}$"
_USERNAME = re.compile(USERNAME_PATTERN)
NODE_ID_PATTERN = r"^n[a-z2-7]{24}$"


def new_id() -> str:
    """A time-ordered UUIDv7, as text."""
    return str(uuid_utils.uuid7())


def is_uuid(text: str) -> bool:
    """A UUID in its canonical form only: 36 characters, lower case, hyphens.

    Ids travel in envelopes whose schema allows only this form, and they are
    compared as text: ``ABC…`` and ``abc…`` must not name two things.
    """
    try:
        return str(uuid.UUID(text)) == text
    except (ValueError, AttributeError, TypeError):
        return False


def is_username(text: str) -> bool:
    return bool(_USERNAME.fullmatch(text))
