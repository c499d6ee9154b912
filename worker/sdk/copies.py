"""The messages a product worker publishes besides acknowledgements: retry copies, dead
letters and handed-back tasks, with the same headers the service's own roles write (so
`deletion-worker dlq` reads and replays them alike)."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from worker.amqp import Delivery, Outgoing, QueueNames, Topology
from worker.amqp.topology import (
    ATTEMPT_HEADER,
    BROKER_DELIVERY_COUNT_HEADER,
    DEAD_AT_HEADER,
    ERROR_HEADER,
    ORIGIN_HEADER,
)

HEADER_TEXT_MAX = 1000


def _fresh_headers(delivery: Delivery) -> dict[str, object]:
    # The broker's own count stays behind: a copy starts uncounted towards the delivery limit.
    return {k: v for k, v in delivery.headers.items() if k != BROKER_DELIVERY_COUNT_HEADER}


def full_jitter_tier(tiers: Sequence[int], bound_ms: int) -> int:
    """A retry tier for a backoff bound, with full jitter: a delay drawn uniformly from
    0..bound, rounded down to the nearest tier (the shortest tier when it is below all)."""
    drawn = random.uniform(0, bound_ms)
    below = [delay for delay in tiers if delay <= drawn]
    return below[-1] if below else min(tiers)


@dataclass(frozen=True)
class Copies:
    topology: Topology
    queue: QueueNames
    max_attempts: int
    base_ms: int
    cap_ms: int

    def bound_ms(self, attempt: int) -> int:
        return int(min(self.cap_ms, self.base_ms * 2 ** min(max(attempt - 1, 0), 40)))

    def retry(self, delivery: Delivery, reason: str) -> tuple[Outgoing, int | None]:
        """The retry copy of a delivery and its delay, or its dead letter (delay None) once
        `max_attempts` are used up."""
        attempt = delivery.attempt + 1
        if attempt >= self.max_attempts:
            return self.dead(delivery, f"retries exhausted after {attempt} attempts: {reason}"), None
        delay = full_jitter_tier(self.topology.retry_delays_ms, self.bound_ms(attempt))
        outgoing = Outgoing(
            exchange=self.topology.retry_tier(delay),
            routing_key=self.queue.main,  # where the tier returns it when its time is up
            body=delivery.body,
            headers={**_fresh_headers(delivery), ATTEMPT_HEADER: attempt, ERROR_HEADER: reason[:HEADER_TEXT_MAX]},
            message_id=delivery.message_id,
        )
        return outgoing, delay

    def dead(self, delivery: Delivery, reason: str) -> Outgoing:
        headers = {
            **_fresh_headers(delivery),
            ERROR_HEADER: reason[:HEADER_TEXT_MAX],
            ORIGIN_HEADER: self.queue.main,
            DEAD_AT_HEADER: int(time.time() * 1000),
        }
        return Outgoing(
            routing_key=self.queue.dead, body=delivery.body, headers=headers, message_id=delivery.message_id
        )

    def hand_back(self, delivery: Delivery) -> Outgoing:
        return Outgoing(
            routing_key=self.queue.main,
            body=delivery.body,
            headers=_fresh_headers(delivery),
            message_id=delivery.message_id,
        )
