"""The event outbox (migrations/0008): rows of the changes that database triggers wrote
in the transactions that made them, read back by the events relay as lifecycle events.

A row is leased while a relay publishes it and deleted once the broker confirmed all of
its events; a relay that dies leaves the lease to run out and another publishes the row
again (events are at least once; consumers deduplicate by eventId).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import asyncpg


@dataclass(frozen=True)
class EventBatch:
    outbox_id: int
    events: list[dict[str, object]]


# Called in the transaction that deletes relayed rows, with their events: what else must
# happen exactly once per event (webhook deliveries) happens there.
RelayedHook = Callable[[asyncpg.Connection, list[dict[str, object]]], Awaitable[None]]


async def claim(
    connection: asyncpg.Connection, max_rows: int, max_events: int, lease_seconds: float
) -> list[EventBatch]:
    """Rows nobody holds a lease on, oldest first, up to `max_rows` rows and about
    `max_events` events (at least one row, however many: a statement's events are one
    row), with their changes made into events."""
    rows = await connection.fetch(LEASE, max_rows, max_events, lease_seconds)
    batches: dict[int, EventBatch] = {}
    for row in rows:
        outbox_id = row["outbox_id"]
        batch = batches.get(outbox_id)
        if batch is None:
            batch = batches[outbox_id] = EventBatch(outbox_id, [])
        batch.events.append(lifecycle_event(row))
    return [batches[key] for key in sorted(batches)]


# One statement (one round trip, no transaction around it): lock up to $1 free rows, keep
# the oldest whose events add up to at most $2 (the first always, however many it has: a
# statement's events are one row), lease those, and return their changes, one row each,
# in the order the trigger wrote them. Rows locked but not kept are free again at once.
LEASE = """
WITH free AS (
    SELECT id, event_count FROM event_outbox WHERE claimed_until < clock_timestamp()
    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
), kept AS (
    SELECT id FROM (
        SELECT id, sum(event_count) OVER (ORDER BY id) AS events, row_number() OVER (ORDER BY id) AS place FROM free
    ) counted
    WHERE place = 1 OR events <= $2
), leased AS (
    UPDATE event_outbox SET claimed_until = clock_timestamp() + make_interval(secs => $3), attempts = attempts + 1
    WHERE id IN (SELECT id FROM kept)
    RETURNING id, occurred_at, events
)
SELECT l.id AS outbox_id, l.occurred_at, e.*
FROM leased l CROSS JOIN LATERAL unnest(l.events) WITH ORDINALITY AS e
ORDER BY l.id, e.ordinality
"""


def event_id(occurred: datetime, outbox_id: int, ordinal: int) -> str:
    """A UUID (version 8, RFC 9562) unique to one event and the same every time its row is
    published: the row's time in milliseconds (ids stay time-ordered, and a row id that a
    restored database hands out again does not repeat an old event's), then the event's
    place in its row (26 bits) and the row's id (48 bits)."""
    millis = _millis(occurred) & (1 << 48) - 1
    value = (
        millis << 80
        | 0x8 << 76
        | (ordinal >> 14 & 0xFFF) << 64
        | 0b10 << 62
        | (ordinal & 0x3FFF) << 48
        | outbox_id & (1 << 48) - 1
    )
    return str(uuid.UUID(int=value))


def lifecycle_event(row: asyncpg.Record) -> dict[str, object]:
    """The event (schemas.events.LifecycleEvent, fields in its order) of one change."""
    names = row["product_names"]
    due_at = row["due_at"]
    return {
        "eventId": event_id(row["occurred_at"], row["outbox_id"], row["ordinality"]),
        "type": row["type"],
        "occurredAt": _utc_text(row["occurred_at"], OCCURRED_FORMAT),
        "jobId": row["job_id"],
        "requestId": row["request_id"],
        "workorderId": row["workorder_id"],
        "bundleId": row["bundle_id"],
        "projectKey": row["project_key"],
        "organization": row["organization"],
        "status": row["status"],
        "jobStatus": row["job_status"],
        "product": row["product"],
        "products": None if names is None else dict(zip(names, row["product_statuses"], strict=True)),
        "error": row["error"],
        "regulation": row["regulation"],
        "dueAt": None if due_at is None else _utc_text(due_at, DUE_FORMAT),
    }


OCCURRED_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
DUE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


# A row's events share its time and a job's events its due date: formatted once each, not
# once per event (strftime was a fifth of the relay's CPU per event).
@lru_cache(maxsize=4096)
def _utc_text(moment: datetime, layout: str) -> str:
    return moment.astimezone(UTC).strftime(layout)


@lru_cache(maxsize=4096)
def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def relayed(connection: asyncpg.Connection, batches: list[EventBatch], hooks: list[RelayedHook]) -> None:
    """The broker confirmed every event of these rows: delete them, and run the hooks in
    the same transaction (so each happens once per event however often it was sent)."""
    async with connection.transaction():
        gone = await connection.fetch(
            "DELETE FROM event_outbox WHERE id = ANY($1::bigint[]) RETURNING id", [b.outbox_id for b in batches]
        )
        deleted = {row["id"] for row in gone}
        # A row another relay already deleted (its lease had run out under us) was
        # handed to the hooks by that relay.
        events = [event for batch in batches if batch.outbox_id in deleted for event in batch.events]
        for hook in hooks:
            await hook(connection, events)


async def pending(connection: asyncpg.Connection) -> tuple[int, float]:
    """Events not yet relayed, and the age in seconds of the oldest."""
    row = await connection.fetchrow(
        "SELECT coalesce(sum(event_count), 0) AS events,"
        " coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age FROM event_outbox"
    )
    assert row is not None
    return int(row["events"]), float(row["age"])
