"""Backoff for transient failures: exponential, capped, with full jitter.

Full jitter (a uniform draw between zero and the exponential bound) spreads the retries
of many messages that failed together, so a product that comes back is not hit by all
of them at the same instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from worker.settings import Settings


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_ms: int
    cap_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.retry_max_attempts, settings.retry_base_ms, settings.retry_cap_ms)

    def bound_ms(self, attempt: int) -> int:
        """The largest delay before attempt number `attempt` (1-based)."""
        return int(min(self.cap_ms, self.base_ms * 2 ** min(max(attempt - 1, 0), 40)))

    def delay_ms(self, attempt: int) -> int:
        # Never below a tenth of the bound, so retries do not degenerate into a hot loop.
        bound = self.bound_ms(attempt)
        return max(1, int(random.uniform(bound / 10, bound)))


# Reconnecting to a broker or database that is down, and waiting for one: quick at
# first, then every 10 s at most.
RECONNECT_POLICY = RetryPolicy(max_attempts=1_000_000, base_ms=250, cap_ms=10_000)
