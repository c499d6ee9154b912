"""Webhook deliveries (migrations/0009): claimed under a lease a few per endpoint, then
settled by outcome. worker.roles.notify makes the calls.

A round takes endpoints that have something due, oldest first, skipping those this
process already keeps busy (SKIP LOCKED, so rounds of other processes take others), and
up to a few due rows of each: a dead endpoint with a million rows owed yields as many
rows to a round as a healthy one with one. A claimed row is leased by pushing its
`next_attempt_at` past the call's deadline; a process that dies leaves it to be taken
again then (at least once).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    event_id: str
    subscription_id: uuid.UUID | None  # None: a callback URL of the event's job
    project_id: int
    url: str
    endpoint: str
    event: bytes  # the event's JSON, the body as sent
    event_type: str
    attempts: int  # this one included
    created_at: datetime
    sealed_secrets: list[bytes]  # active signing secrets, newest first (none: cannot be signed)


@dataclass(frozen=True)
class Retry:
    delivery_id: int
    endpoint: str
    delay_seconds: float
    error: str


CLAIM_ENDPOINTS = """
SELECT e.endpoint, coalesce(b.free, $2) AS slots
FROM webhook_endpoints e
LEFT JOIN unnest($3::text[], $4::int[]) AS b(endpoint, free) ON b.endpoint = e.endpoint
WHERE e.next_attempt_at <= now() AND coalesce(b.free, $2) > 0
ORDER BY e.next_attempt_at
LIMIT $1
FOR UPDATE OF e SKIP LOCKED
"""

CLAIM_ROWS = """
WITH picked AS (
    SELECT d.id
    FROM unnest($1::text[], $2::int[]) AS ep(endpoint, slots)
    CROSS JOIN LATERAL (
        SELECT id FROM webhook_deliveries
        WHERE endpoint = ep.endpoint AND next_attempt_at <= now()
        ORDER BY next_attempt_at
        LIMIT ep.slots
        FOR UPDATE SKIP LOCKED
    ) d
    LIMIT $3
)
UPDATE webhook_deliveries d
SET next_attempt_at = now() + make_interval(secs => $4), attempts = d.attempts + 1
FROM picked
WHERE d.id = picked.id
RETURNING d.id, d.event_id, d.subscription_id, d.project_id, d.url, d.endpoint, d.event::text AS event,
          d.event->>'type' AS event_type, d.attempts, d.created_at,
          ARRAY(SELECT k.sealed FROM webhook_secrets k
                WHERE (k.subscription_id = d.subscription_id
                       OR (d.subscription_id IS NULL AND k.callback_project_id = d.project_id))
                  AND (k.retire_at IS NULL OR k.retire_at > now())
                ORDER BY k.id DESC) AS sealed_secrets
"""

# An endpoint just served is next due with its earliest row (a leased one's lease end,
# when a process dies), or never, while it owes nothing.
RESCHEDULE_ENDPOINTS = """
UPDATE webhook_endpoints e
SET next_attempt_at = coalesce(
    (SELECT min(next_attempt_at) FROM webhook_deliveries d WHERE d.endpoint = e.endpoint), 'infinity')
WHERE e.endpoint = ANY($1::text[])
"""


def _claimed(row: asyncpg.Record) -> ClaimedDelivery:
    return ClaimedDelivery(
        row["id"],
        row["event_id"],
        row["subscription_id"],
        row["project_id"],
        row["url"],
        row["endpoint"],
        row["event"].encode(),
        row["event_type"] or "",
        row["attempts"],
        row["created_at"],
        list(row["sealed_secrets"]),
    )


async def claim(
    connection: asyncpg.Connection,
    *,
    limit: int,
    per_endpoint: int,
    busy: dict[str, int],
    lease_seconds: float,
) -> list[ClaimedDelivery]:
    """At most `limit` due rows, at most `per_endpoint` of an endpoint (less what this
    process has in flight there: `busy`), leased for `lease_seconds`."""
    if limit <= 0:
        return []
    async with connection.transaction():
        endpoints = await connection.fetch(
            CLAIM_ENDPOINTS,
            limit,
            per_endpoint,
            list(busy),
            [max(0, per_endpoint - count) for count in busy.values()],
        )
        if not endpoints:
            return []
        names = [row["endpoint"] for row in endpoints]
        rows = await connection.fetch(CLAIM_ROWS, names, [row["slots"] for row in endpoints], limit, lease_seconds)
        await connection.execute(RESCHEDULE_ENDPOINTS, names)
    return [_claimed(row) for row in rows]


async def settle(
    connection: asyncpg.Connection,
    *,
    delivered: list[ClaimedDelivery],
    retries: list[Retry],
    removed: list[ClaimedDelivery],
    endpoint_backoff: tuple[float, float],
    answered: tuple[ClaimedDelivery, ...] = (),
) -> None:
    """Record a round's outcomes in one transaction: delivered and removed rows go (and
    an endpoint that answered, also `answered` removed ones, is well again), retried rows
    wait, and their endpoints back off: `endpoint_backoff` (base, cap) seconds, doubling
    with each failure in a row, jittered between half and all of it."""
    async with connection.transaction():
        gone = [d.id for d in delivered] + [d.id for d in removed]
        if gone:
            await connection.execute("DELETE FROM webhook_deliveries WHERE id = ANY($1::bigint[])", gone)
        if retries:
            await connection.execute(
                """
                UPDATE webhook_deliveries d
                SET next_attempt_at = now() + make_interval(secs => r.delay), last_error = r.error
                FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS r(id, delay, error)
                WHERE d.id = r.id
                """,
                [r.delivery_id for r in retries],
                [r.delay_seconds for r in retries],
                [r.error[:500] for r in retries],
            )
        # Each endpoint once, in endpoint order (no deadlock with the fan-out): a failure
        # backs it off, an answer (2xx, 410) makes it well again; one whose rows only left
        # (dead-lettered) is due again, to be rescheduled from the rows it still has.
        kinds: dict[str, str] = {d.endpoint: "touched" for d in removed}
        kinds.update({d.endpoint: "answered" for d in delivered})
        kinds.update({d.endpoint: "answered" for d in removed if d in answered})
        kinds.update({r.endpoint: "failed" for r in retries})
        if kinds:
            names = sorted(kinds)
            base, cap = endpoint_backoff
            await connection.execute(
                """
                UPDATE webhook_endpoints e
                SET failures = CASE n.kind WHEN 'failed' THEN e.failures + 1 WHEN 'answered' THEN 0 ELSE e.failures END,
                    next_attempt_at = CASE WHEN n.kind = 'failed'
                        THEN now() + make_interval(secs => least($4, $3 * power(2, least(e.failures, 30)))
                                                          * (0.5 + random() / 2))
                        ELSE least(e.next_attempt_at, now()) END
                FROM unnest($1::text[], $2::text[]) AS n(endpoint, kind)
                WHERE e.endpoint = n.endpoint
                """,
                names,
                [kinds[name] for name in names],
                base,
                cap,
            )


async def drop_gone_target(connection: asyncpg.Connection, delivery: ClaimedDelivery) -> None:
    """A 410: a subscription is removed (its secrets and pending rows with it); a
    callback URL's pending rows are dropped."""
    if delivery.subscription_id is not None:
        await connection.execute("DELETE FROM webhook_subscriptions WHERE id = $1", delivery.subscription_id)
    else:
        await connection.execute(
            "DELETE FROM webhook_deliveries WHERE endpoint = $1 AND url = $2 AND subscription_id IS NULL",
            delivery.endpoint,
            delivery.url,
        )


async def claim_expired(
    connection: asyncpg.Connection, give_up: timedelta, limit: int, lease_seconds: float
) -> list[ClaimedDelivery]:
    """Rows older than `give_up` that nobody is sending, leased while they are moved to
    the dead-letter queue (their endpoint may have been backing off for all that time)."""
    rows = await connection.fetch(
        """
        WITH picked AS (
            SELECT id FROM webhook_deliveries
            WHERE created_at < now() - $1::interval AND next_attempt_at <= now()
            ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
        )
        UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $3)
        FROM picked WHERE d.id = picked.id
        RETURNING d.id, d.event_id, d.subscription_id, d.project_id, d.url, d.endpoint, d.event::text AS event,
                  d.event->>'type' AS event_type, d.attempts, d.created_at, '{}'::bytea[] AS sealed_secrets
        """,
        give_up,
        limit,
        lease_seconds,
    )
    return [_claimed(row) for row in rows]


async def remove(connection: asyncpg.Connection, delivery_ids: list[int]) -> None:
    await connection.execute("DELETE FROM webhook_deliveries WHERE id = ANY($1::bigint[])", delivery_ids)


async def pending(connection: asyncpg.Connection) -> tuple[int, float]:
    """Deliveries not yet made, and the age in seconds of the oldest."""
    row = await connection.fetchrow(
        "SELECT count(*) AS pending, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age"
        " FROM webhook_deliveries"
    )
    assert row is not None
    return int(row["pending"]), float(row["age"])


async def forget_idle_endpoints(connection: asyncpg.Connection, idle: timedelta) -> int:
    """Endpoints that owe nothing and saw nothing for `idle`. A fan-out touching one at
    the same moment sets its `next_attempt_at`, which the delete re-checks under the lock."""
    result = await connection.execute(
        """
        DELETE FROM webhook_endpoints e
        WHERE e.next_attempt_at = 'infinity' AND e.seen_at < now() - $1::interval
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint = e.endpoint)
        """,
        idle,
    )
    return int(result.split()[-1])
