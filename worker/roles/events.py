"""Events relay role: publishes the event outbox (worker.store.events) to the events
exchange, one message per event with its type as the routing key.

Rows are taken under a lease, a few thousand events at a time, published with
confirms (not mandatory: an event nobody subscribed to is dropped by the broker, which
is normal), and deleted once every event of the row was confirmed, together with what
must happen once per event (the `hooks`: webhook deliveries). A row with a refused
event keeps its lease and is published again when it runs out; so does every row of a
relay that died mid-way. Consumers deduplicate by eventId.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import orjson
import structlog

from worker import metrics
from worker.amqp import Outgoing, Topology
from worker.errors import describe
from worker.roles.base import Session
from worker.roles.loop import PeriodicRole
from worker.store.events import RelayedHook, claim, pending, relayed
from worker.topics import TopicFilter

log = structlog.get_logger(__name__)

ROWS_PER_ROUND = 200
# Events a round holds, about 1 KB each parsed (and a row of more, alone): with 50,000
# requests' events waiting, a relay that took 4 MB of rows as stored (compressed) held
# 640 MB once they were parsed.
EVENTS_PER_ROUND = 5000
PENDING_GAUGE_EVERY_S = 10.0


class EventRelayRole(PeriodicRole):
    def __init__(
        self,
        pool: asyncpg.Pool,
        topology: Topology,
        *,
        interval: float,
        lease_seconds: float,
        hooks: Sequence[RelayedHook] = (),
        max_events: int = EVENTS_PER_ROUND,
        publish_types: tuple[str, ...] = ("#",),
    ) -> None:
        super().__init__("events", interval)
        self.pool = pool
        self.topology = topology
        self.lease_seconds = lease_seconds
        self.hooks = list(hooks)
        self.max_events = max_events
        # Event types left out are not published, but their rows are relayed all the same:
        # the hooks (webhooks, callbacks) still see every event.
        self.publishes = TopicFilter(publish_types)
        self.published_events = 0
        self._gauge_at = 0.0

    def summary(self) -> dict[str, int]:
        return {"events_published": self.published_events}  # broker messages confirmed

    async def tick(self, session: Session) -> bool:
        await self._export_pending()
        async with self.pool.acquire() as connection:
            batches = await claim(connection, ROWS_PER_ROUND, self.max_events, self.lease_seconds)
        if not batches:
            return False
        self.state.busy()
        messages: list[Outgoing] = []
        owners: list[int] = []  # the batch each message came from
        for index, batch in enumerate(batches):
            for event in batch.events:
                if self.publishes(str(event["type"])):
                    messages.append(self._message(event))
                    owners.append(index)
        outcomes = await session.publisher.publish_each(messages)
        refused: dict[int, BaseException] = {}
        for owner, outcome in zip(owners, outcomes, strict=True):
            if outcome is not None:
                refused.setdefault(owner, outcome)
        for index, error in refused.items():
            log.warning("event_row_refused", outbox_id=batches[index].outbox_id, error=describe(error))
        done = [batch for index, batch in enumerate(batches) if index not in refused]
        if done:
            async with self.pool.acquire() as connection:
                await relayed(connection, done, self.hooks)
            published = sum(1 for owner in owners if owner not in refused)
            self.published_events += published
            metrics.EVENTS_PUBLISHED.inc(published)
            self.state.settled(sum(len(batch.events) for batch in done))
        return not refused  # more may wait: look again at once

    def _message(self, event: dict[str, object]) -> Outgoing:
        return Outgoing(
            exchange=self.topology.events_exchange,
            routing_key=str(event["type"]),
            body=orjson.dumps(event),
            message_id=str(event["eventId"]),
            queue_label=self.topology.events_exchange,
            mandatory=False,
        )

    async def _export_pending(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._gauge_at < PENDING_GAUGE_EVERY_S:
            return
        self._gauge_at = now
        async with self.pool.acquire() as connection:
            count, age = await pending(connection)
        metrics.EVENTS_PENDING.set(count)
        metrics.EVENTS_OLDEST_AGE.set(age)
