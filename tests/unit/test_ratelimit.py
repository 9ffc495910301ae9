"""Rate limits and login backoff (services/ratelimit.py), on a fake clock.

The moving windows come from the ``limits`` library, which reads the wall
clock itself; the fixture points that clock at the test's fake clock, so a
window passes without anybody sleeping.
"""

from __future__ import annotations

from types import SimpleNamespace

import limits.aio.storage.memory
import pytest

from flamechat.protocol import errors
from flamechat.services import ratelimit
from flamechat.services.ratelimit import LoginBackoff, RateLimits, RateSettings
from tests.unit.support import FakeClock

SETTINGS = RateSettings(
    messages_per_minute=5,
    bytes_per_minute=1000,
    file_bytes_per_hour=10_000,
    peer_requests_per_second=3,
    logins_per_minute_per_address=4,
    logins_per_minute_per_account=2,
    login_free_failures=3,
    login_max_lockout=60.0,
)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    fake_time = SimpleNamespace(time=fake.now)
    monkeypatch.setattr(limits.aio.storage.memory, "time", fake_time)
    monkeypatch.setattr(ratelimit, "time", fake_time)
    return fake


@pytest.fixture
def rates(clock: FakeClock) -> RateLimits:
    return RateLimits(SETTINGS, clock)


async def allowed(rates: RateLimits, kind: str, key: str, tries: int, cost: int = 1) -> int:
    """How many of ``tries`` hits pass before the first refusal (and then stop)."""
    for n in range(tries):
        try:
            await rates.hit(kind, key, cost)
        except errors.RateLimited:
            return n
    return tries


async def test_messages_per_minute_are_capped_then_the_window_moves_on(
    rates: RateLimits, clock: FakeClock
) -> None:
    assert await allowed(rates, "messages", "alice", 10) == 5
    clock.advance(30)
    with pytest.raises(errors.RateLimited) as refused:
        await rates.hit("messages", "alice")
    assert refused.value.status == 429
    assert 30 <= refused.value.details["retry_after"] <= 31
    clock.advance(31)  # a minute after the first five
    assert await allowed(rates, "messages", "alice", 10) == 5


async def test_retry_after_tells_when_the_oldest_hit_leaves_the_window(
    rates: RateLimits, clock: FakeClock
) -> None:
    await rates.hit("messages", "alice")
    clock.advance(20)
    assert await allowed(rates, "messages", "alice", 4) == 4
    with pytest.raises(errors.RateLimited) as refused:
        await rates.hit("messages", "alice")
    retry = refused.value.details["retry_after"]
    assert 40 <= retry <= 41  # the first hit (20 s ago) leaves the one-minute window in 40 s
    clock.advance(retry)
    await rates.hit("messages", "alice")


async def test_one_user_flooding_does_not_limit_another(rates: RateLimits) -> None:
    assert await allowed(rates, "messages", "mallory", 50) == 5
    assert await allowed(rates, "messages", "alice", 5) == 5


async def test_a_flooding_peer_is_throttled_while_another_gets_through(
    rates: RateLimits, clock: FakeClock
) -> None:
    assert await allowed(rates, "peer", "nflood", 100) == 3
    assert await allowed(rates, "peer", "nquiet", 3) == 3
    clock.advance(1.01)
    assert await allowed(rates, "peer", "nflood", 100) == 3


async def test_bytes_are_counted_by_cost(rates: RateLimits, clock: FakeClock) -> None:
    await rates.hit("bytes", "alice", cost=600)
    await rates.hit("bytes", "alice", cost=400)
    with pytest.raises(errors.RateLimited):
        await rates.hit("bytes", "alice", cost=1)
    clock.advance(61)
    await rates.hit("bytes", "alice", cost=1000)


@pytest.mark.parametrize(("kind", "limit"), [("bytes", 1000), ("file-bytes", 10_000)])
async def test_a_single_hit_larger_than_the_whole_window_is_too_large_not_too_soon(
    rates: RateLimits, kind: str, limit: int
) -> None:
    with pytest.raises(errors.PayloadTooLarge) as refused:
        await rates.hit(kind, "alice", cost=limit + 1)
    # 413, with no Retry-After: waiting would never let it through.
    assert (refused.value.status, refused.value.code) == (413, "payload_too_large")
    assert "retry_after" not in refused.value.details
    assert refused.value.details["limit"] == limit
    await rates.hit(kind, "alice", cost=limit)  # and it consumed nothing


async def test_file_bytes_are_counted_per_hour_apart_from_message_text(
    rates: RateLimits, clock: FakeClock
) -> None:
    await rates.hit("file-bytes", "alice", cost=6000)
    await rates.hit("bytes", "alice", cost=1000)  # text has its own budget
    with pytest.raises(errors.RateLimited) as refused:
        await rates.hit("file-bytes", "alice", cost=6000)
    assert refused.value.status == 429
    assert 3500 <= refused.value.details["retry_after"] <= 3601  # rounded up, never short
    await rates.hit("file-bytes", "bob", cost=10_000)  # per user
    clock.advance(61)
    with pytest.raises(errors.RateLimited):  # a minute is not enough: the window is an hour
        await rates.hit("file-bytes", "alice", cost=6000)
    clock.advance(3600)
    await rates.hit("file-bytes", "alice", cost=6000)


async def test_login_limits_per_address_and_per_account(rates: RateLimits) -> None:
    assert await allowed(rates, "login-address", "10.0.0.1", 10) == 4
    assert await allowed(rates, "login-address", "10.0.0.2", 1) == 1
    assert await allowed(rates, "login-account", "alice", 10) == 2
    assert await allowed(rates, "login-account", "bob", 1) == 1


def test_default_settings_are_generous_for_people_and_bounded() -> None:
    defaults = RateSettings()
    assert defaults.messages_per_minute >= 60
    # The text limit is one that can be met: below a minute of the largest messages.
    assert 64 * 1024 <= defaults.bytes_per_minute < defaults.messages_per_minute * 64 * 1024
    assert defaults.file_bytes_per_hour >= 2 * 1024**3  # a largest file (2 GiB) fits in an hour
    assert defaults.logins_per_minute_per_account < defaults.logins_per_minute_per_address
    assert 0 < defaults.login_max_lockout <= 3600


# --- login backoff ---------------------------------------------------------------------------


def backoff(clock: FakeClock) -> LoginBackoff:
    return LoginBackoff(clock, free=3, cap=60.0)


def lockout(logins: LoginBackoff, account: str) -> int | None:
    try:
        logins.check(account)
    except errors.RateLimited as refused:
        retry: int = refused.details["retry_after"]
        return retry
    return None


def test_a_few_wrong_passwords_cost_nothing() -> None:
    clock = FakeClock()
    logins = backoff(clock)
    for _ in range(3):
        logins.failed("alice")
        assert lockout(logins, "alice") is None


def test_each_further_failure_doubles_the_wait_up_to_the_cap() -> None:
    clock = FakeClock()
    logins = backoff(clock)
    for _ in range(3):
        logins.failed("alice")
    waits = []
    for _ in range(9):
        logins.failed("alice")
        waits.append(lockout(logins, "alice"))
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_the_lockout_ends_when_its_time_has_passed() -> None:
    clock = FakeClock()
    logins = backoff(clock)
    for _ in range(6):
        logins.failed("alice")
    assert lockout(logins, "alice") == 4
    clock.advance(3.5)
    assert lockout(logins, "alice") == 1  # rounded up: never "retry after 0"
    clock.advance(0.5)
    assert lockout(logins, "alice") is None


def test_a_success_clears_the_count() -> None:
    clock = FakeClock()
    logins = backoff(clock)
    for _ in range(5):
        logins.failed("alice")
    clock.advance(60)
    logins.succeeded("alice")
    logins.failed("alice")
    assert lockout(logins, "alice") is None


def test_one_account_under_attack_does_not_lock_out_another() -> None:
    clock = FakeClock()
    logins = backoff(clock)
    for _ in range(10):
        logins.failed("alice")
    assert lockout(logins, "alice") is not None
    assert lockout(logins, "bob") is None


def test_memory_is_bounded_and_forgets_the_quiet_accounts_first() -> None:
    clock = FakeClock()
    logins = backoff(clock)
    for _ in range(8):
        logins.failed("alice")  # the account under attack is seen first...
    for i in range(100_001):
        logins.failed(f"user{i}")  # ...then a flood of failures on other names
        if i % 25_000 == 0:
            logins.failed("alice")  # while alice keeps being attacked
    assert len(logins._failures) <= 100_000
    assert lockout(logins, "alice") is not None
