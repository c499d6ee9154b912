"""Jobs at risk of missing their due date, or past it (migrations/0008: `due_watch`
holds the active jobs that have one; triggers add and remove them).

Each job is told once at risk and once overdue: the event is written to the event
outbox in the statement that marks it sent, so it exists if and only if the mark does.
A job already overdue when first seen is told overdue only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import asyncpg

MARK_DUE = """
WITH due AS (
    SELECT w.job_id, CASE WHEN w.due_at <= now() THEN 'job.overdue' ELSE 'job.at_risk' END AS kind
    FROM due_watch w
    WHERE (NOT w.overdue_sent AND w.due_at <= now())
       OR (NOT w.at_risk_sent AND w.due_at - $1::interval <= now())
    ORDER BY w.due_at, w.job_id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), marked AS (
    UPDATE due_watch w SET at_risk_sent = true, overdue_sent = w.overdue_sent OR d.kind = 'job.overdue'
    FROM due d WHERE w.job_id = d.job_id
    RETURNING w.job_id, d.kind
), told AS (
    INSERT INTO event_outbox (events, event_count)
    SELECT array_agg(ROW(m.kind, j.status, j.id, j.request_id, j.workorder_id, j.bundle_id, p.key, p.org_id,
                         j.status, NULL, coalesce(s.names, '{}'), coalesce(s.statuses, '{}'), NULL,
                         j.regulation, j.due_at)::deletion_event_change ORDER BY j.id),
           count(*)
    FROM marked m
    JOIN jobs j ON j.id = m.job_id
    JOIN projects p ON p.id = j.project_id
    LEFT JOIN deletion_product_statuses(ARRAY(SELECT job_id FROM marked)) s ON s.job_id = m.job_id
    HAVING count(*) > 0
)
SELECT count(*) FILTER (WHERE kind = 'job.at_risk') AS at_risk, count(*) FILTER (WHERE kind = 'job.overdue') AS overdue
FROM marked
"""


@dataclass(frozen=True)
class DueCounts:
    at_risk: dict[str, int]  # projectKey → active jobs within the margin, not yet due
    overdue: dict[str, int]  # projectKey → active jobs past their due date


async def tell_due_jobs(connection: asyncpg.Connection, margin: timedelta, limit: int) -> tuple[int, int]:
    """Emit job.at_risk / job.overdue for up to `limit` jobs not told yet: (at risk, overdue)."""
    row = await connection.fetchrow(MARK_DUE, margin, limit)
    assert row is not None
    return row["at_risk"], row["overdue"]


async def due_counts(connection: asyncpg.Connection, margin: timedelta) -> DueCounts:
    rows = await connection.fetch(
        "SELECT p.key, count(*) FILTER (WHERE w.due_at <= now()) AS overdue,"
        " count(*) FILTER (WHERE w.due_at > now() AND w.due_at - $1::interval <= now()) AS at_risk"
        " FROM due_watch w JOIN projects p ON p.id = w.project_id"
        " WHERE w.due_at - $1::interval <= now() GROUP BY p.key",
        margin,
    )
    return DueCounts({r["key"]: r["at_risk"] for r in rows}, {r["key"]: r["overdue"] for r in rows})
