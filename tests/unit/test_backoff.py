"""The retry schedule of the outbox (services/delivery.backoff_delay), as a pure rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamechat.services.delivery import backoff_delay
from tests.unit.support import PROPERTY

attempts = st.integers(min_value=1, max_value=100_000)
bases = st.floats(min_value=0.01, max_value=60)
caps = st.floats(min_value=0.01, max_value=86_400)
jitter = st.floats(min_value=0.0, max_value=1.0)


@PROPERTY
@given(attempts=attempts, base=bases, cap=caps, r=jitter)
def test_delay_is_within_jitter_of_the_capped_exponential(
    attempts: int, base: float, cap: float, r: float
) -> None:
    raw = min(cap, base * 2.0 ** min(attempts - 1, 64))
    delay = backoff_delay(attempts, base=base, cap=cap, rng=lambda: r)
    assert 0.5 * raw - 1e-9 <= delay <= raw + 1e-9
    assert delay <= cap + 1e-9


@PROPERTY
@given(attempts=attempts, base=bases, cap=caps, r=jitter)
def test_delay_never_shrinks_from_one_attempt_to_the_next(
    attempts: int, base: float, cap: float, r: float
) -> None:
    rng = lambda: r  # noqa: E731 - same jitter both times
    assert backoff_delay(attempts + 1, base=base, cap=cap, rng=rng) >= backoff_delay(
        attempts, base=base, cap=cap, rng=rng
    )


def test_without_jitter_the_delay_doubles_until_the_cap() -> None:
    delays = [backoff_delay(n, base=0.5, cap=10, rng=lambda: 1.0) for n in range(1, 9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_jitter_spreads_retries_over_half_to_the_full_delay() -> None:
    assert backoff_delay(3, base=1, cap=100, rng=lambda: 0.0) == 2.0
    assert backoff_delay(3, base=1, cap=100, rng=lambda: 1.0) == 4.0


@pytest.mark.parametrize("attempts", [1_025, 10_000, 10**9])
def test_a_peer_down_for_days_does_not_overflow_the_schedule(attempts: int) -> None:
    # A week of retries every few minutes is thousands of attempts: 2.0**1024 overflows a float.
    assert backoff_delay(attempts, base=0.5, cap=300, rng=lambda: 1.0) == 300


def test_the_default_jitter_stays_in_range() -> None:
    delays = [backoff_delay(4, base=1, cap=100) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 1
