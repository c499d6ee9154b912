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
from worker.store.events import EventBatch, RelayedHook, claim, pending, relayed

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
    ) -> None:
        super().__init__("events", interval)
        self.pool = pool
        self.topology = topology
        self.lease_seconds = lease_seconds
        self.hooks = list(hooks)
        self.max_events = max_events
        self.published_events = 0
        self._gauge_at = 0.0

    def summary(self) -> dict[str, int]:
        return {"events_published": self.published_events}

    async def tick(self, session: Session) -> bool:
        await self._export_pending()
        async with self.pool.acquire() as connection:
            batches = await claim(connection, ROWS_PER_ROUND, self.max_events, self.lease_seconds)
        if not batches:
            return False
        self.state.busy()
        messages = [self._message(event) for batch in batches for event in batch.events]
        outcomes = await session.publisher.publish_each(messages)
        done: list[EventBatch] = []
        start = 0
        for batch in batches:
            refused = [o for o in outcomes[start : start + len(batch.events)] if o is not None]
            start += len(batch.events)
            if refused:
                log.warning("event_row_refused", outbox_id=batch.outbox_id, error=describe(refused[0]))
            else:
                done.append(batch)
        if done:
            async with self.pool.acquire() as connection:
                await relayed(connection, done, self.hooks)
            count = sum(len(batch.events) for batch in done)
            self.published_events += count
            metrics.EVENTS_PUBLISHED.inc(count)
            self.state.settled(count)
        return len(done) == len(batches)  # more may wait: look again at once

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
