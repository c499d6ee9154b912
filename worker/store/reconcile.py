"""What the reconciler reads and repairs: jobs that stopped moving.

Repairs are safe to run at any time, from any number of processes: each only does what
the pipeline itself would have done (end a job whose products have all ended; put a job
back on the queue it should be on), guarded so that doing it twice changes nothing.
What cannot be repaired safely (a product that never acknowledged) is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from worker.store.acks import finish_jobs


async def active_job_counts(connection: asyncpg.Connection) -> tuple[int, int]:
    """(scheduled, running) from the small tables that index them."""
    row = await connection.fetchrow(
        "SELECT (SELECT count(*) FROM dispatch_queue) AS scheduled, (SELECT count(*) FROM running_jobs) AS running"
    )
    assert row is not None
    return row["scheduled"], row["running"]


async def finish_ended_jobs(connection: asyncpg.Connection, limit: int = 1000) -> list[int]:
    """Running jobs whose every product has ended but which were not ended themselves
    (their acknowledgement's process died between its two statements): end them."""
    rows = await connection.fetch(
        "SELECT r.job_id FROM running_jobs r WHERE NOT EXISTS (SELECT 1 FROM product_status ps"
        " WHERE ps.job_id = r.job_id AND ps.status IN ('waiting', 'running')) LIMIT $1",
        limit,
    )
    completed, failed = await finish_jobs(connection, [row["job_id"] for row in rows])
    # Rows of jobs ended elsewhere (by a process of the previous release, say) go too.
    await connection.execute(
        "DELETE FROM running_jobs r USING jobs j WHERE j.id = r.job_id AND j.status <> 'running'"
        " AND r.job_id = ANY($1::bigint[])",
        [row["job_id"] for row in rows],
    )
    return completed + failed


SWEEP = """
WITH page AS (
    SELECT id, status, start_at, created_at, dispatched_at, finished_at, identities_hashed_at
    FROM jobs WHERE id > $1 ORDER BY id LIMIT $2
), scheduled AS (
    INSERT INTO dispatch_queue (due_at, job_id)
    SELECT coalesce(p.start_at, p.created_at), p.id FROM page p
    WHERE p.status = 'scheduled' AND NOT EXISTS (SELECT 1 FROM dispatch_queue q WHERE q.job_id = p.id)
    RETURNING job_id
), running AS (
    INSERT INTO running_jobs (job_id, since)
    SELECT p.id, coalesce(p.dispatched_at, p.created_at) FROM page p
    WHERE p.status = 'running' AND NOT EXISTS (SELECT 1 FROM running_jobs r WHERE r.job_id = p.id)
    RETURNING job_id
), ended AS (
    INSERT INTO retention_queue (finished_at, job_id)
    SELECT coalesce(p.finished_at, now()), p.id FROM page p
    WHERE p.status IN ('completed', 'failed', 'cancelled') AND p.identities_hashed_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM retention_queue q WHERE q.job_id = p.id)
    RETURNING job_id
)
SELECT (SELECT max(id) FROM page) AS last_id,
       (SELECT count(*) FROM scheduled) AS requeued,
       (SELECT count(*) FROM running) AS tracked,
       (SELECT count(*) FROM ended) AS retained
"""


@dataclass(frozen=True)
class SweepResult:
    next_after: int  # the id to continue after (0: start over)
    requeued: int
    tracked: int
    retained: int


async def sweep_page(connection: asyncpg.Connection, after_id: int, page: int) -> SweepResult:
    """Look at the next `page` jobs by id and put each on the small table its status needs
    (a process of an older release may have written a job without it). Reads the jobs
    table a page at a time: a whole pass over a large table takes many rounds."""
    row = await connection.fetchrow(SWEEP, after_id, page)
    assert row is not None
    last = row["last_id"]
    return SweepResult(last if last is not None else 0, row["requeued"], row["tracked"], row["retained"])


STUCK = """
SELECT 'not_dispatched' AS reason, q.job_id, q.due_at AS since, NULL::text[] AS products
FROM dispatch_queue q WHERE q.due_at < now() - $1::interval
UNION ALL
SELECT CASE WHEN EXISTS (SELECT 1 FROM task_outbox o, task_chunks c
                         WHERE c.job_id = r.job_id AND c.task_id = ANY(o.task_ids))
            THEN 'unpublished' ELSE 'awaiting_products' END,
       r.job_id, r.since,
       ARRAY(SELECT ps.product FROM product_status ps
             WHERE ps.job_id = r.job_id AND ps.status IN ('waiting', 'running') ORDER BY ps.product)
FROM running_jobs r
WHERE r.since < now() - $1::interval
  AND NOT EXISTS (SELECT 1 FROM task_chunks c WHERE c.job_id = r.job_id AND c.acked_at > now() - $1::interval)
ORDER BY since
LIMIT $2
"""


@dataclass(frozen=True)
class StuckJob:
    job_id: int
    reason: str  # not_dispatched | unpublished | awaiting_products
    since: datetime
    products: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"jobId": self.job_id, "reason": self.reason, "since": self.since, "waitingFor": self.products}


async def stuck_jobs(connection: asyncpg.Connection, older_than: timedelta, limit: int = 1000) -> list[StuckJob]:
    """Active jobs that have not moved for `older_than`: due and not dispatched, or running
    with no acknowledgement in that time (their tasks unpublished, or not acknowledged by
    the products named)."""
    rows = await connection.fetch(STUCK, older_than, limit)
    return [StuckJob(row["job_id"], row["reason"], row["since"], list(row["products"] or [])) for row in rows]
