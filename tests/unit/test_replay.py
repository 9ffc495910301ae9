"""The replay guard: each signed request is accepted once, inside a time window,
with bounded memory (protocol/replay.py). Time is passed in; nothing sleeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamechat.protocol.replay import ReplayGuard
from tests.unit.support import PROPERTY

NOW = 1_800_000_000.0


def test_a_new_request_is_accepted_once() -> None:
    guard = ReplayGuard(window=60)
    assert guard.check("node:nonce-1", NOW, NOW)
    assert not guard.check("node:nonce-1", NOW, NOW)
    assert not guard.check("node:nonce-1", NOW, NOW + 30)
    assert guard.check("node:nonce-2", NOW, NOW)


@pytest.mark.parametrize(
    ("skew", "accepted"), [(-60, True), (60, True), (-60.5, False), (61, False), (-3600, False)]
)
def test_timestamps_outside_the_window_are_refused(skew: float, accepted: bool) -> None:
    guard = ReplayGuard(window=60)
    assert guard.fresh(NOW + skew, NOW) is accepted
    assert guard.check("k", NOW + skew, NOW) is accepted


def test_a_refused_stale_request_is_not_remembered() -> None:
    guard = ReplayGuard(window=60)
    assert not guard.check("k", NOW - 500, NOW)
    assert len(guard) == 0


def test_a_replay_after_the_key_is_forgotten_is_still_refused() -> None:
    guard = ReplayGuard(window=60)
    assert guard.check("k", NOW, NOW)
    # Long after, the memory has let go of "k", but its timestamp is stale now.
    assert not guard.check("k", NOW, NOW + 61)
    assert len(guard) == 0


def test_keys_are_forgotten_once_their_timestamp_leaves_the_window() -> None:
    guard = ReplayGuard(window=60)
    for i in range(10):
        assert guard.check(f"k{i}", NOW + i, NOW + i)
    assert len(guard) == 10
    guard.check("later", NOW + 65, NOW + 65)  # k0..k4 (timestamps < NOW+5) are out of window
    assert len(guard) == 6


def test_memory_is_bounded_by_capacity() -> None:
    guard = ReplayGuard(window=60, capacity=100)
    for i in range(1000):
        guard.check(f"k{i}", NOW + i / 100, NOW + i / 100)
        assert len(guard) <= 100


def test_a_full_memory_never_lets_a_forgotten_request_replay() -> None:
    """A flood fills the memory inside one window. The requests pushed out of
    memory must still be refused if replayed within the window."""
    guard = ReplayGuard(window=60, capacity=10)
    accepted = [(f"k{i}", NOW + i) for i in range(30) if guard.check(f"k{i}", NOW + i, NOW + i)]
    assert len(accepted) == 30
    now = NOW + 30
    for key, timestamp in accepted:
        assert guard.fresh(timestamp, now)  # the window alone would accept these
        assert not guard.check(key, timestamp, now)
    # A genuinely new request still gets through.
    assert guard.check("new", now, now)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReplayGuard(capacity=0)


requests = st.tuples(st.just("new"), st.integers(0, 10**6), st.integers(-70, 70), st.integers(0, 10))
replays = st.tuples(st.just("replay"), st.integers(0, 10**6), st.just(0), st.integers(0, 10))
events = st.lists(st.one_of(requests, replays), max_size=80)


@PROPERTY
@given(events=events, capacity=st.integers(1, 6))
def test_no_request_is_ever_accepted_twice(events: list[tuple[str, int, int, int]], capacity: int) -> None:
    """The property the federation API relies on, for any mix of new requests
    and replays of earlier ones, and any (small) capacity: the same signed
    request never passes twice, stale requests never pass, and memory stays
    within capacity."""
    guard = ReplayGuard(window=60, capacity=capacity)
    now = NOW
    sent: list[tuple[str, float]] = []
    accepted: set[tuple[str, float]] = set()
    for kind, number, skew, elapsed in events:
        now += elapsed
        if kind == "replay" and sent:
            key, timestamp = sent[number % len(sent)]
        else:
            key, timestamp = f"nonce-{len(sent)}", now + skew
            sent.append((key, timestamp))
        if guard.check(key, timestamp, now):
            assert abs(now - timestamp) <= 60
            assert (key, timestamp) not in accepted
            accepted.add((key, timestamp))
        assert len(guard) <= capacity


@PROPERTY
@given(count=st.integers(1, 50))
def test_with_room_enough_every_distinct_fresh_request_passes(count: int) -> None:
    guard = ReplayGuard(window=60, capacity=count)
    assert all(guard.check(f"k{i}", NOW, NOW) for i in range(count))
