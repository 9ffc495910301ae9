"""Live events (services/events.py): who gets what, presence edges, bounded queues,
and tabs that vanish without closing (heartbeats, the tab timeout; fake clock)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flamechat.services.events import (
    ENDED,
    ENDED_SESSIONS,
    ENDED_SESSIONS_SECONDS,
    MAX_POLLING_TABS,
    MAX_STREAMS,
    PROBATION_SECONDS,
    QUEUE_LENGTH,
    EventHub,
    Subscription,
)
from tests.unit.support import PROPERTY, FakeClock


def drain(sub: Subscription) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait())
    return out


def test_an_event_reaches_every_tab_of_its_user_and_nobody_else() -> None:
    hub = EventHub()
    alice_tab1, alice_tab2, bob = hub.subscribe("alice"), hub.subscribe("alice"), hub.subscribe("bob")
    hub.publish("alice", {"type": "message", "n": 1})
    assert drain(alice_tab1) == [{"type": "message", "n": 1}]
    assert drain(alice_tab2) == [{"type": "message", "n": 1}]
    assert drain(bob) == []


def test_publishing_to_nobody_is_harmless() -> None:
    hub = EventHub()
    hub.publish("carol", {"type": "message"})
    assert hub.connected() == set()


def test_events_arrive_in_order() -> None:
    hub = EventHub()
    tab = hub.subscribe("alice")
    for n in range(10):
        hub.publish("alice", {"n": n})
    assert [e["n"] for e in drain(tab)] == list(range(10))


def test_an_unsubscribed_tab_gets_nothing_more() -> None:
    hub = EventHub()
    closed, open_tab = hub.subscribe("alice"), hub.subscribe("alice")
    hub.unsubscribe(closed)
    hub.publish("alice", {"n": 1})
    assert drain(closed) == []
    assert drain(open_tab) == [{"n": 1}]


def test_broadcast_reaches_every_connected_user() -> None:
    hub = EventHub()
    tabs = [hub.subscribe(name) for name in ("alice", "bob", "carol")]
    hub.broadcast({"type": "directory", "reachable": False})
    assert all(drain(tab) == [{"type": "directory", "reachable": False}] for tab in tabs)


def test_presence_changes_only_on_the_first_tab_and_the_last() -> None:
    hub = EventHub()
    changes: list[tuple[str, bool]] = []
    hub.on_presence_change(lambda user, online: changes.append((user, online)))
    first = hub.subscribe("alice")
    second = hub.subscribe("alice")
    assert changes == [("alice", True)]
    assert hub.connected() == {"alice"}
    hub.unsubscribe(first)
    assert changes == [("alice", True)]
    hub.unsubscribe(second)
    assert changes == [("alice", True), ("alice", False)]
    assert hub.connected() == set()
    hub.unsubscribe(second)  # closing twice (a retried disconnect) changes nothing
    assert changes == [("alice", True), ("alice", False)]


def test_a_slow_tab_is_told_to_resync_instead_of_growing_without_bound() -> None:
    hub = EventHub()
    slow, other = hub.subscribe("alice"), hub.subscribe("bob")
    for n in range(QUEUE_LENGTH + 10):
        hub.publish("alice", {"n": n})
    assert slow.queue.qsize() <= QUEUE_LENGTH
    events = drain(slow)
    assert events[0] == {"type": "resync"}
    assert events[-1] == {"n": QUEUE_LENGTH + 9}  # the newest event is never the one lost
    assert [e["n"] for e in events[1:]] == list(range(QUEUE_LENGTH, QUEUE_LENGTH + 10))
    assert drain(other) == []


def test_one_slow_tab_does_not_cost_a_fast_tab_its_events() -> None:
    hub = EventHub()
    slow, fast = hub.subscribe("alice"), hub.subscribe("alice")
    for n in range(QUEUE_LENGTH * 2):
        hub.publish("alice", {"n": n})
        assert fast.queue.get_nowait() == {"n": n}  # the fast tab keeps up
    assert slow.queue.qsize() <= QUEUE_LENGTH


@PROPERTY
@given(
    script=st.lists(
        st.one_of(
            st.tuples(st.just("publish"), st.integers(1, 600)),
            st.tuples(st.just("read"), st.integers(1, 600)),
        ),
        max_size=12,
    )
)
def test_queues_stay_bounded_and_keep_the_newest_event(script: list[tuple[str, int]]) -> None:
    hub = EventHub()
    tab = hub.subscribe("alice")
    sent = 0
    last_read: dict[str, Any] | None = None
    for action, count in script:
        if action == "publish":
            for _ in range(count):
                hub.publish("alice", {"n": sent})
                sent += 1
                assert tab.queue.qsize() <= QUEUE_LENGTH
        else:
            for _ in range(min(count, tab.queue.qsize())):
                event = tab.queue.get_nowait()
                if "n" in event:
                    # Never an older event after a newer one.
                    assert last_read is None or event["n"] > last_read["n"]
                    last_read = event
    remaining = drain(tab)
    if sent:
        newest = [e for e in remaining if "n" in e]
        assert (newest and newest[-1]["n"] == sent - 1) or (
            last_read is not None and last_read["n"] == sent - 1
        )


# --- tabs that vanish without closing: heartbeats and the timeout ---------------------------


def hub_with_clock(timeout: float = 45.0) -> tuple[EventHub, FakeClock, list[tuple[str, bool]]]:
    clock = FakeClock()
    hub = EventHub(clock, tab_timeout=timeout)
    changes: list[tuple[str, bool]] = []
    hub.on_presence_change(lambda user, online: changes.append((user, online)))
    return hub, clock, changes


def test_a_stream_not_heard_from_for_the_timeout_is_ended_and_its_user_goes_offline() -> None:
    """The laptop is shut: its stream still looks open, but no heartbeat comes."""
    hub, clock, changes = hub_with_clock(45.0)
    silent = hub.subscribe("alice", "tab-on-the-laptop")
    clock.advance(44.0)
    assert hub.sweep() == 0
    assert hub.connected() == {"alice"}
    clock.advance(1.0)
    assert hub.sweep() == 1
    assert hub.connected() == set()
    assert changes == [("alice", True), ("alice", False)]
    assert silent.ended
    assert drain(silent) == [{"type": ENDED}]  # its feed ends, closing the connection
    hub.publish("alice", {"type": "message"})
    assert drain(silent) == []


def test_heartbeats_keep_a_tab_open_as_long_as_they_come() -> None:
    hub, clock, changes = hub_with_clock(45.0)
    tab = hub.subscribe("alice", "tab-1")
    for _ in range(10):  # 300 s, a heartbeat every 30 s
        clock.advance(30.0)
        hub.heartbeat("alice", "tab-1")
        assert hub.sweep() == 0
    assert hub.connected() == {"alice"}
    assert not tab.ended
    clock.advance(45.0)  # then the heartbeats stop
    hub.sweep()
    assert hub.connected() == set()
    assert changes == [("alice", True), ("alice", False)]


def test_only_the_silent_tab_is_dropped_and_the_user_stays_online_on_the_other() -> None:
    hub, clock, changes = hub_with_clock(45.0)
    laptop, phone = hub.subscribe("alice", "laptop-tab"), hub.subscribe("alice", "phone-tab")
    clock.advance(30.0)
    hub.heartbeat("alice", "phone-tab")
    clock.advance(30.0)
    assert hub.sweep() == 1
    assert laptop.ended
    assert not phone.ended
    assert hub.connected() == {"alice"}
    assert changes == [("alice", True)]
    hub.publish("alice", {"n": 1})
    assert drain(phone) == [{"n": 1}]


def test_a_polling_tab_is_online_while_it_sends_heartbeats_and_offline_within_the_timeout_after() -> None:
    hub, clock, changes = hub_with_clock(45.0)
    hub.heartbeat("bob", "polling-tab")  # no stream: the page polls
    assert hub.connected() == {"bob"}
    for _ in range(5):
        clock.advance(15.0)
        hub.heartbeat("bob", "polling-tab")
        hub.sweep()
    assert hub.connected() == {"bob"}
    clock.advance(44.0)
    hub.sweep()
    assert hub.connected() == {"bob"}
    clock.advance(1.0)
    hub.sweep()
    assert hub.connected() == set()
    assert changes == [("bob", True), ("bob", False)]


def test_a_polling_tab_that_closes_is_offline_at_once() -> None:
    hub, _clock, changes = hub_with_clock()
    hub.heartbeat("bob", "polling-tab")
    hub.close_tab("bob", "polling-tab")
    assert hub.connected() == set()
    assert changes == [("bob", True), ("bob", False)]


def test_a_stream_that_comes_back_takes_its_leases_place_and_closing_it_is_offline_at_once() -> None:
    """A stream drops; the page polls (and heartbeats) meanwhile; the stream comes back
    under the same tab id and takes the lease's place: closing it is offline at once."""
    hub, _clock, changes = hub_with_clock()
    first = hub.subscribe("alice", "tab-1")
    hub.heartbeat("alice", "tab-1")
    hub.unsubscribe(first)  # the connection dropped
    hub.heartbeat("alice", "tab-1")  # the page polls meanwhile
    again = hub.subscribe("alice", "tab-1")
    hub.heartbeat("alice", "tab-1")
    hub.unsubscribe(again)  # the tab is closed
    assert hub.connected() == set()
    assert changes == [("alice", True), ("alice", False), ("alice", True), ("alice", False)]


def test_polling_tabs_of_one_user_are_bounded_in_number() -> None:
    hub, clock, _changes = hub_with_clock()
    for n in range(MAX_POLLING_TABS * 3):
        clock.advance(0.01)
        hub.heartbeat("mallory", f"made-up-tab-{n}")
    assert hub.connected() == {"mallory"}
    assert len(hub._subs["mallory"]) == MAX_POLLING_TABS
    stream = hub.subscribe("mallory", "real-tab")
    hub.publish("mallory", {"n": 1})
    assert drain(stream) == [{"n": 1}]  # leases get no events, the stream does


def test_live_streams_of_one_user_are_bounded_in_number_and_the_oldest_is_ended() -> None:
    """Each stream is a connection and a queue every event is copied into: a
    script opening thousands of them held the node's memory and CPU."""
    clock = FakeClock()
    hub = EventHub(clock)
    streams = []
    for _ in range(MAX_STREAMS + 10):
        streams.append(hub.subscribe("mallory"))
        clock.advance(0.01)
    hub.publish("mallory", {"type": "message"})
    ended = [s for s in streams if s.ended]
    assert len(ended) == 10
    assert ended == streams[:10]  # the oldest
    assert all(drain(s) == [{"type": ENDED}] for s in ended)  # their feeds end, closing the connection
    assert all(drain(s) == [{"type": "message"}] for s in streams[10:])
    assert hub.connected() == {"mallory"}
    assert drain(hub.subscribe("bob")) == []  # other users are untouched


def test_logging_out_ends_that_sessions_tabs_and_only_those() -> None:
    hub = EventHub(FakeClock())
    seen: list[tuple[str, bool]] = []
    hub.on_presence_change(lambda user, online: seen.append((user, online)))
    laptop = hub.subscribe("alice", "laptop-tab-1", session="laptop")
    hub.heartbeat("alice", "laptop-tab-2", session="laptop")  # a polling tab of the same login
    phone = hub.subscribe("alice", "phone-tab-1", session="phone")
    assert hub.end_session("alice", "laptop") == 2
    assert laptop.ended
    assert drain(laptop) == [{"type": ENDED}]  # its feed finishes now
    hub.publish("alice", {"type": "message", "n": 1})
    assert drain(phone) == [{"type": "message", "n": 1}]  # the phone's login is untouched
    assert "alice" in hub.connected()
    assert hub.end_session("alice", "phone") == 1
    assert "alice" not in hub.connected()
    assert seen == [("alice", True), ("alice", False)]


def test_a_streams_answer_that_arrives_after_the_tab_closed_leaves_the_user_offline() -> None:
    """The tab answers an ``alive`` just as it is closed: the answer reaches the node
    after the stream's end. It must not open a polling lease, which would show the
    user online for a whole ``tab_timeout`` after their last tab was closed."""
    hub, _clock, changes = hub_with_clock(45.0)
    sub = hub.subscribe("alice", "tab-1")
    assert hub.heartbeat("alice", "tab-1", stream=True)
    hub.unsubscribe(sub)  # the tab was closed
    assert not hub.heartbeat("alice", "tab-1", stream=True)  # its last answer, late
    assert hub.connected() == set()
    assert changes == [("alice", True), ("alice", False)]
    assert hub.heartbeat("alice", "tab-1")  # a beat from polling (the stream dropped) does count
    assert hub.connected() == {"alice"}


def test_a_tab_let_in_just_before_its_session_logged_out_does_not_keep_the_user_online() -> None:
    """A stream's request (or a polling tab's beat) checked the session, then the
    logout ran, then the request reached the hub: it must not show the user online
    for a whole ``tab_timeout`` after they logged out."""
    hub, clock, changes = hub_with_clock(45.0)
    hub.subscribe("alice", "tab-1", session="laptop")
    hub.end_session("alice", "laptop")
    late = hub.subscribe("alice", "tab-2", session="laptop")
    assert late.ended
    assert drain(late) == [{"type": ENDED}]  # its feed finishes at once
    assert not hub.heartbeat("alice", "tab-3", session="laptop")
    assert hub.connected() == set()
    assert changes == [("alice", True), ("alice", False)]
    hub.subscribe("alice", "tab-4", session="phone")  # another login is untouched
    assert hub.connected() == {"alice"}
    clock.advance(ENDED_SESSIONS_SECONDS)
    hub.sweep()  # the memory of ended sessions is bounded in time
    assert hub._ended_sessions == {}


def test_the_memory_of_logged_out_sessions_is_bounded_in_count() -> None:
    hub = EventHub(FakeClock())
    for n in range(ENDED_SESSIONS + 10):
        hub.end_session("alice", f"session-{n}")
    assert len(hub._ended_sessions) == ENDED_SESSIONS
    assert "session-0" not in hub._ended_sessions
    assert f"session-{ENDED_SESSIONS + 9}" in hub._ended_sessions


def test_a_closing_pages_last_poll_after_its_stream_ended_holds_the_user_for_seconds_only() -> None:
    """The page is closed: its stream ends, and its error handler, running as the page
    dies, sends one polling beat. That lease is on probation: without a second beat
    it ends within seconds, not a whole ``tab_timeout`` (45 s) later."""
    hub, clock, changes = hub_with_clock(45.0)
    hub.unsubscribe(hub.subscribe("alice", "tab-1"))  # the page was closed
    assert hub.heartbeat("alice", "tab-1")  # its dying beat
    assert hub.connected() == {"alice"}
    clock.advance(PROBATION_SECONDS)
    hub.sweep()
    assert hub.connected() == set()
    assert changes == [("alice", True), ("alice", False), ("alice", True), ("alice", False)]


def test_a_tab_that_polls_on_after_its_stream_dropped_is_confirmed_by_its_second_beat() -> None:
    hub, clock, _changes = hub_with_clock(45.0)
    hub.unsubscribe(hub.subscribe("alice", "tab-1"))  # the stream dropped; the page lives on
    assert hub.heartbeat("alice", "tab-1")  # first beat: on probation
    clock.advance(2.0)
    assert hub.heartbeat("alice", "tab-1")  # the second, as the page sends it: confirmed
    clock.advance(44.0)
    hub.sweep()
    assert hub.connected() == {"alice"}  # a whole tab_timeout from the last beat
    clock.advance(1.0)
    hub.sweep()
    assert hub.connected() == set()
    # A tab that never had a stream (it always polled) is not on probation.
    assert hub.heartbeat("alice", "tab-2")
    clock.advance(PROBATION_SECONDS + 1)
    hub.sweep()
    assert hub.connected() == {"alice"}
