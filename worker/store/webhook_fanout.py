"""The fan-out of relayed lifecycle events into webhook deliveries (migrations/0009): one
row per event and matching subscription, per event and callback URL of its job, and per
status-changing event and status callback URL of an OpenDSR request. Runs as the events
relay's hook, in its delete transaction, so each row is made once however often the
event was published; and the replay of given-up deliveries from the dead-letter queue.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import orjson

from worker.store.opendsr import FAN_OUT_TARGETS

# Events of the relayed batch, one row each; a subscription of the event's project whose
# types match it (`*` is any run of characters; `_` in a product name is literal), and
# every callback URL of the event's job. One statement for the whole batch.
FAN_OUT = rf"""
WITH events AS (
    SELECT e AS event, e->>'eventId' AS event_id, e->>'type' AS type, e->>'projectKey' AS project_key,
           (e->>'jobId')::bigint AS job_id
    FROM jsonb_array_elements($1::text::jsonb) AS e
), targets AS (
    SELECT ev.event, ev.event_id, s.id AS subscription_id, s.project_id, s.url
    FROM events ev
    JOIN projects p ON p.key = ev.project_key
    JOIN webhook_subscriptions s ON s.project_id = p.id
    WHERE EXISTS (SELECT 1 FROM unnest(s.event_types) t
                  WHERE ev.type LIKE replace(replace(t, '_', '\_'), '*', '%'))
    UNION ALL
    SELECT ev.event, ev.event_id, NULL, j.project_id, u.url
    FROM events ev
    JOIN jobs j ON j.id = ev.job_id
    CROSS JOIN LATERAL unnest(j.callback_urls) AS u(url)
    WHERE u.url IS NOT NULL
    UNION ALL
{FAN_OUT_TARGETS}
), inserted AS (
    INSERT INTO webhook_deliveries (event_id, subscription_id, project_id, url, endpoint, event)
    SELECT event_id, subscription_id, project_id, url, deletion_webhook_endpoint(url), event FROM targets
    ON CONFLICT DO NOTHING
    RETURNING endpoint
)
SELECT DISTINCT endpoint FROM inserted ORDER BY endpoint
"""  # noqa: S608 - constant text

# The endpoints of new rows: known to the rounds, and due now unless they are backing off
# (an endpoint that owed nothing, 'infinity', is due again whatever its failures).
# In endpoint order, so that two transactions lock them in the same order.
TOUCH_ENDPOINTS = """
INSERT INTO webhook_endpoints AS e (endpoint, next_attempt_at)
SELECT endpoint, now() FROM unnest($1::text[]) AS n(endpoint) ORDER BY endpoint
ON CONFLICT (endpoint) DO UPDATE
SET seen_at = now(),
    next_attempt_at = CASE WHEN e.failures = 0 OR e.next_attempt_at = 'infinity' THEN least(e.next_attempt_at, now())
                           ELSE e.next_attempt_at END
"""


# Whether any event of a batch has somewhere to go: a subscription of its project, a
# callback URL of its job, or an OpenDSR request of its job. Usually none, and then the
# fan-out, which parses every event in Postgres (6 per request on the hot path), is
# skipped: one look-up per project and per job instead.
ANYONE_TO_TELL = """
SELECT EXISTS (SELECT 1 FROM webhook_subscriptions s JOIN projects p ON p.id = s.project_id WHERE p.key = ANY($1))
    OR EXISTS (SELECT 1 FROM jobs WHERE id = ANY($2::bigint[]) AND callback_urls IS NOT NULL)
    OR EXISTS (SELECT 1 FROM opendsr_requests WHERE job_id = ANY($2::bigint[]))
"""


async def _anyone_to_tell(connection: asyncpg.Connection, events: list[dict[str, object]]) -> bool:
    projects = sorted({str(event["projectKey"]) for event in events})
    jobs = sorted({int(str(event["jobId"])) for event in events})
    found: bool = await connection.fetchval(ANYONE_TO_TELL, projects, jobs)
    return found


async def enqueue_deliveries(connection: asyncpg.Connection, events: list[dict[str, object]]) -> None:
    """The relay's hook (worker.store.events.relayed): one delivery row per event and
    matching subscription, and per event and callback URL of its job, in the relay's
    transaction, so each is made once however often the event was published."""
    if not events or not await _anyone_to_tell(connection, events):
        return
    endpoints = await connection.fetch(FAN_OUT, orjson.dumps(events).decode())
    if endpoints:
        await connection.execute(TOUCH_ENDPOINTS, [row["endpoint"] for row in endpoints])


@dataclass(frozen=True)
class RestoredDelivery:
    """A delivery given up and replayed from the dead-letter queue."""

    event: dict[str, object]
    subscription_id: uuid.UUID | None
    project_id: int
    url: str


async def restore_deliveries(connection: asyncpg.Connection, restored: list[RestoredDelivery]) -> int:
    """Make the rows again (a subscription's with its current URL; one removed since is
    skipped); returns how many were made. A row still pending is left as it is."""
    if not restored:
        return 0
    rows = await connection.fetch(
        """
        WITH given AS (
            SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::text[])
                AS g(event, subscription_id, project_id, url)
        ), targets AS (
            SELECT g.event::jsonb AS event, s.id AS subscription_id, s.project_id, s.url
            FROM given g JOIN webhook_subscriptions s ON s.id = g.subscription_id
            UNION ALL
            SELECT g.event::jsonb, NULL, g.project_id, g.url
            FROM given g JOIN projects p ON p.id = g.project_id
            WHERE g.subscription_id IS NULL
        )
        INSERT INTO webhook_deliveries (event_id, subscription_id, project_id, url, endpoint, event)
        SELECT event->>'eventId', subscription_id, project_id, url, deletion_webhook_endpoint(url), event FROM targets
        ON CONFLICT DO NOTHING
        RETURNING endpoint
        """,
        [orjson.dumps(r.event).decode() for r in restored],
        [r.subscription_id for r in restored],
        [r.project_id for r in restored],
        [r.url for r in restored],
    )
    if rows:
        await connection.execute(TOUCH_ENDPOINTS, sorted({row["endpoint"] for row in rows}))
    return len(rows)
