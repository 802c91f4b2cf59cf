"""The retry policy alone: full-jitter backoff, Retry-After (classification:
test_wire_outcome.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmr_appliance.wire.retry import RetryPolicy, parse_retry_after


@given(attempt=st.integers(1, 30), seed=st.integers(0, 2**32))
def test_backoff_stays_within_the_exponential_ceiling(attempt: int, seed: int) -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=2.0)
    wait = policy.backoff(attempt, random.Random(seed))
    assert 0.0 <= wait <= min(2.0, 0.1 * 2 ** (attempt - 1))


def test_backoff_is_jittered_not_fixed() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    rng = random.Random(7)
    waits = {round(policy.backoff(3, rng), 6) for _ in range(20)}
    assert len(waits) > 10


def test_retry_after_is_a_floor_but_capped() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=0.2, max_retry_after=10.0)
    assert policy.delay(1, retry_after=3.0, rng=random.Random(1)) == 3.0
    assert policy.delay(1, retry_after=3600.0, rng=random.Random(1)) == 10.0
    assert policy.delay(1, retry_after=None, rng=random.Random(1)) <= 0.1


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None


@pytest.mark.parametrize(
    "kwargs", [{"attempts": 0}, {"base_delay": -1}, {"base_delay": 5, "max_delay": 1}]
)
def test_policy_refuses_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_longest_pauses_bound_every_backoff_of_one_router() -> None:
    policy = RetryPolicy(attempts=4, base_delay=0.2, max_delay=0.5)
    assert policy.longest_pauses() == pytest.approx(0.2 + 0.4 + 0.5)
    assert RetryPolicy(attempts=1).longest_pauses() == 0.0
    rng = random.Random(3)
    for _ in range(200):
        total = sum(policy.delay(n, rng=rng) for n in range(1, policy.attempts))
        assert total <= policy.longest_pauses()


def test_a_caller_that_never_stops_counting_stays_at_the_cap() -> None:
    # The sync agent counts failures for as long as home is away: hours of them.
    policy = RetryPolicy(base_delay=1.0, max_delay=15.0)
    assert policy.ceiling(10_000) == 15.0
    assert 0.0 <= policy.delay(10_000, retry_after=None, rng=random.Random(1)) <= 15.0
