"""What the notify role's delivery loop decides and keeps: its options, the outcomes of a
round not yet recorded, and the dead-letter message of a delivery given up."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

import orjson

from worker.amqp import Outgoing, QueueNames
from worker.amqp.topology import DEAD_AT_HEADER, ERROR_HEADER, ORIGIN_HEADER
from worker.retry import RetryPolicy
from worker.settings import Settings
from worker.store.webhook_deliveries import ClaimedDelivery

LEASE_MARGIN_SECONDS = 30.0  # beyond the call's timeout: time to record its outcome
ENDPOINT_BACKOFF_CAP_SECONDS = 60.0
UNSIGNABLE_CALLBACK = (
    "callback: the project has no callback secret to sign with; create one"
    " (`deletion-worker webhooks callback-secret PROJECT`), then `deletion-worker dlq replay`"
)


@dataclass(frozen=True)
class DeliveryOptions:
    concurrency: int
    per_endpoint: int
    timeout: float
    give_up: timedelta
    retry: RetryPolicy
    interval: float

    @property
    def lease_seconds(self) -> float:
        return self.timeout + LEASE_MARGIN_SECONDS

    @property
    def endpoint_backoff(self) -> tuple[float, float]:
        """(base, cap) in seconds of an endpoint's own backoff: it is probed at least once
        a minute however long its rows wait."""
        return self.retry.base_ms / 1000, min(self.retry.cap_ms / 1000, ENDPOINT_BACKOFF_CAP_SECONDS)


@dataclass
class RoundResults:
    """Outcomes not yet recorded (kept until they are: a database error loses none)."""

    delivered: list[ClaimedDelivery] = field(default_factory=list)
    retries: list[tuple[ClaimedDelivery, str]] = field(default_factory=list)
    gone: list[ClaimedDelivery] = field(default_factory=list)
    dead: list[tuple[ClaimedDelivery, str]] = field(default_factory=list)
    dead_published: list[ClaimedDelivery] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.delivered) + len(self.retries) + len(self.gone) + len(self.dead) + len(self.dead_published)


def dead_letter(delivery: ClaimedDelivery, reason: str, queues: QueueNames) -> Outgoing:
    """The dead-letter message of a delivery: what the notify role needs to make it again
    when it is replayed onto `queues.main` (no secret, no identity: events carry none)."""
    body = orjson.dumps(
        {
            "subscriptionId": str(delivery.subscription_id) if delivery.subscription_id else None,
            "projectId": delivery.project_id,
            "url": None if delivery.subscription_id else delivery.url,
            "attempts": delivery.attempts,
            "event": orjson.Fragment(delivery.event),
        }
    )
    target = str(delivery.subscription_id) if delivery.subscription_id else "callback"
    return Outgoing(
        routing_key=queues.dead,
        body=body,
        message_id=f"{delivery.event_id}/{target}/{delivery.id}",
        headers={ERROR_HEADER: reason[:1000], ORIGIN_HEADER: queues.main, DEAD_AT_HEADER: int(time.time() * 1000)},
    )


def delivery_options(settings: Settings) -> DeliveryOptions:
    return DeliveryOptions(
        concurrency=settings.webhook_concurrency,
        per_endpoint=settings.webhook_per_endpoint,
        timeout=settings.webhook_timeout,
        give_up=settings.webhook_give_up,
        retry=RetryPolicy(1_000_000, settings.webhook_retry_base_ms, settings.webhook_retry_cap_ms),
        interval=settings.webhook_interval,
    )
