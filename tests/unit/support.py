"""Shared pieces of the unit tests: a fake clock, fixed keys, Hypothesis settings.

Nothing here touches the network or the wall clock.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from flamechat.crypto import NodeKey, UserKeys
from flamechat.services.ports import TransportError

# Crypto and Argon2 make single examples slow on a shared 2-core machine; the
# properties below are about correctness, not speed, so no deadline.
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW_PROPERTY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class DirectoryDown:
    """Every directory call fails as unreachable: services must answer from their cache."""

    def __getattr__(self, name: str) -> Any:
        async def unreachable(*_args: Any, **_kwargs: Any) -> Any:
            raise TransportError("directory down", transient=True)

        return unreachable


class FakeClock:
    """Time that moves only when a test moves it."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def seed(label: str, size: int = 32) -> bytes:
    """Deterministic key material named by ``label`` (never use outside tests)."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"flamechat-test-seed|{label}|{counter}".encode()).digest()
        counter += 1
    return out[:size]


def user_keys(name: str) -> UserKeys:
    return UserKeys.from_bytes(seed(f"user:{name}", 64))


def node_key(name: str) -> NodeKey:
    return NodeKey.from_seed(seed(f"node:{name}"))


usernames = st.from_regex(r"\A[a-z][a-z0-9_.-]{1,31}\Z")
envelope_ids = st.uuids().map(str)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.text(max_size=12), json_values, max_size=5)
