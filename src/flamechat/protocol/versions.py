"""Protocol versions and optional features, and how two peers agree on one."""

from __future__ import annotations

from collections.abc import Iterable

# Newest first. A node speaks every version listed here.
PROTOCOL_VERSIONS: tuple[str, ...] = ("1",)
FEATURES: tuple[str, ...] = (
    "envelopes",
    "envelope-batch",  # POST /federation/v1/envelopes; without it, peers send one PUT per envelope
    "receipts",
    "relay",
    "presence",
    "presence-push",  # PUT /federation/v1/presence: a node tells its peers of a change at once
    "profiles",
    "files",
    "typing",  # PUT /federation/v1/typing/{id}: "someone is typing", shown live, never stored
)
BATCH_FEATURE = "envelope-batch"
PRESENCE_PUSH_FEATURE = "presence-push"
TYPING_FEATURE = "typing"


class NoCommonVersion(Exception):
    pass


def negotiate(ours: Iterable[str], theirs: Iterable[str]) -> str:
    """The newest version both sides speak (versions are decimal integers)."""
    common = {v for v in ours if v.isdigit()} & {v for v in theirs if v.isdigit()}
    if not common:
        raise NoCommonVersion("no protocol version in common")
    return max(common, key=int)
