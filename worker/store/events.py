"""The event outbox (migrations/0008): rows of lifecycle events that database triggers
wrote in the transactions that made the changes, read back by the events relay.

A row is leased while a relay publishes it and deleted once the broker confirmed all of
its events; a relay that dies leaves the lease to run out and another publishes the row
again (events are at least once; consumers deduplicate by eventId).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import orjson


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
    row). Counted in events, not stored bytes: `events` is compressed on disk, ten to
    one, and it is the parsed events that take a relay's memory."""
    async with connection.transaction():
        candidates = await connection.fetch(
            "SELECT id, event_count FROM event_outbox WHERE claimed_until < clock_timestamp()"
            " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            max_rows,
        )
        taken: list[int] = []
        total = 0
        for row in candidates:
            if taken and total + row["event_count"] > max_events:
                break
            taken.append(row["id"])
            total += row["event_count"]
        if not taken:
            return []
        rows = await connection.fetch(
            "UPDATE event_outbox SET claimed_until = clock_timestamp() + make_interval(secs => $2),"
            " attempts = attempts + 1 WHERE id = ANY($1::bigint[]) RETURNING id, events::text AS events",
            taken,
            lease_seconds,
        )
    batches = [EventBatch(row["id"], orjson.loads(row["events"])) for row in rows]
    batches.sort(key=lambda batch: batch.outbox_id)
    return batches


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
