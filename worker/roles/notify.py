"""Notify role: delivers lifecycle events to webhooks, signed (worker.webhooks.signing).

Delivery rows are made by the events relay in the transaction that takes the events out
of the outbox (`enqueue_deliveries`, worker.store.webhooks), one per event and matching
subscription and per event and callback URL of its job. This role sends them
(worker.roles.notify_delivery) and consumes `<prefix>.webhooks`: deliveries that were
given up and then replayed from `<prefix>.webhooks.dead` (`deletion-worker dlq replay`)
arrive there, and each is made a delivery row again, with a new give-up time.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
import structlog

from worker.amqp import Delivery, QueueNames
from worker.opendsr.signing import ProcessorSigner
from worker.roles.base import Session
from worker.roles.batch import DONE, BatchConsumer, DeadLetter, Disposition, Probe
from worker.roles.consuming import ConsumerOptions
from worker.roles.notify_delivery import Deliverer
from worker.roles.notify_outcomes import delivery_options
from worker.roles.notify_signing import DeliverySigner
from worker.settings import Settings
from worker.store.webhook_fanout import RestoredDelivery, restore_deliveries
from worker.webhooks.crypto import SecretBox
from worker.webhooks.sender import WebhookSender

log = structlog.get_logger(__name__)


def parse_replayed(body: bytes) -> RestoredDelivery | DeadLetter:  # noqa: PLR0911 - one return per reason
    """A dead-lettered delivery (worker.roles.notify_delivery.dead_letter), replayed."""
    try:
        message: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return DeadLetter("json: body is not valid JSON")
    if not isinstance(message, dict) or not isinstance(message.get("event"), dict):
        return DeadLetter("schema: not a webhook delivery (no `event` object)")
    event = message["event"]
    project_id = message.get("projectId")
    subscription = message.get("subscriptionId")
    url = message.get("url")
    if not isinstance(event.get("eventId"), str) or not isinstance(project_id, int):
        return DeadLetter("schema: a webhook delivery needs event.eventId and projectId")
    if subscription is not None:
        try:
            return RestoredDelivery(event, uuid.UUID(str(subscription)), project_id, "")
        except ValueError:
            return DeadLetter("schema: subscriptionId is not a subscription id")
    if not isinstance(url, str) or not url:
        return DeadLetter("schema: a callback delivery needs its url")
    return RestoredDelivery(event, None, project_id, url)


class NotifyRole(BatchConsumer):
    def __init__(
        self,
        queue: QueueNames,
        options: ConsumerOptions,
        *,
        pool: asyncpg.Pool,
        probe: Probe,
        settings: Settings,
    ) -> None:
        super().__init__("notify", queue, options, probe)
        self.pool = pool
        self.sender = WebhookSender(
            timeout=settings.webhook_timeout,
            allow_private=settings.webhook_allow_private,
            max_connections=settings.webhook_concurrency,
        )
        self.deliverer = Deliverer(
            pool,
            signer=DeliverySigner(SecretBox.from_settings(settings), ProcessorSigner.from_settings(settings)),
            sender=self.sender,
            options=delivery_options(settings),
            queues=queue,
            state=self.state,
        )
        self.restored = 0

    async def run(self, session: Session, stopping: asyncio.Event) -> None:
        """Consume replays and deliver, side by side, for this session."""
        delivering = asyncio.create_task(self.deliverer.run(session, stopping))
        try:
            await super().run(session, stopping)
            # A graceful stop: the deliverer finishes its calls (each within its timeout).
            await delivering
        finally:
            if not delivering.done():
                delivering.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await delivering

    async def handle(self, batch: Sequence[Delivery]) -> list[Disposition]:
        dispositions: list[Disposition] = [DONE] * len(batch)
        restored: list[RestoredDelivery] = []
        for index, message in enumerate(batch):
            parsed = parse_replayed(message.body)
            if isinstance(parsed, DeadLetter):
                dispositions[index] = parsed
            else:
                restored.append(parsed)
        if restored:
            async with self.pool.acquire() as connection:
                made = await restore_deliveries(connection, restored)
            self.restored += made
            # Skipped: its subscription was removed since (nowhere to go), or it is pending still.
            log.info("webhook_deliveries_replayed", made=made, skipped=len(restored) - made)
        return dispositions

    def summary(self) -> dict[str, int]:
        return {**super().summary(), **{f"webhooks_{k}": v for k, v in self.deliverer.counts.items()}}

    async def close(self) -> None:
        await self.sender.close()
