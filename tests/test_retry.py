"""Backoff: exponential bound, capped, jittered."""

from __future__ import annotations

from worker.retry import RetryPolicy


def test_bound_doubles_until_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_ms=100, cap_ms=1000)
    assert [policy.bound_ms(a) for a in range(1, 7)] == [100, 200, 400, 800, 1000, 1000]


def test_delays_are_jittered_within_the_bound() -> None:
    policy = RetryPolicy(max_attempts=10, base_ms=1000, cap_ms=60_000)
    delays = [policy.delay_ms(3) for _ in range(200)]
    assert all(400 <= d <= 4000 for d in delays)
    assert len(set(delays)) > 50  # spread out, not one instant


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert RetryPolicy(max_attempts=10, base_ms=1, cap_ms=5).bound_ms(10_000) == 5
