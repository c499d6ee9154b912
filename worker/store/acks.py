"""Acknowledgements: settle chunks, roll them up into product status, then end jobs.

Two statements, each its own transaction, and no lock beyond the rows they write:

1. SETTLE_CHUNKS applies a batch of acknowledgements (SETTLE_SLICE results at a time). Each level counts only
   transitions it actually made (a chunk leaves `waiting` once, a product leaves
   `waiting`/`running` once), so a redelivered acknowledgement changes nothing.
2. FINISH_JOBS, after that commit, ends the jobs whose every product has ended. Two
   batches that end a job's last two products concurrently cannot both miss it: each
   checks only after its own commit, so whichever checks last sees both (a statement
   sees everything committed before it started). A job already ended is left alone.

If the process dies between the two, the batch is redelivered: its chunks are settled
already (it counts as stale), and FINISH_JOBS runs for the jobs of stale results too,
so the job ends then. The reconciler ends any job the two steps still missed.

Tables are locked in one order everywhere: task_chunks, then product_status, then jobs
(a cancel too). Within a table the rows of a batch are locked in the order the join
meets them: two batches, or a batch and a cancel, touching the same job's rows may still
deadlock now and then. Postgres breaks it within deadlock_timeout; the batch is tried
again in place (a CONTENTION failure) and a cancel is retried (worker.db.retry_contention).
Locking every batch's rows in key order first would rule it out, and made this
statement 40 % slower on every batch: not worth it for a rare, recovered event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class ChunkResult:
    task_id: uuid.UUID
    job_id: int
    product: str
    status: str  # success | failed
    error: str | None


@dataclass(frozen=True)
class AckOutcome:
    settled: int
    stale: int
    completed: list[int]
    failed: list[int]


SETTLE_CHUNKS = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[])
        AS t(task_id, job_id, product, status, error)
), settled AS (
    UPDATE task_chunks c SET status = i.status, error = i.error, acked_at = now()
    FROM input i
    WHERE c.task_id = i.task_id AND c.job_id = i.job_id AND c.product = i.product AND c.status = 'waiting'
    RETURNING c.task_id, c.job_id, c.product, c.status, c.error
), per_product AS (
    SELECT job_id, product,
           count(*) FILTER (WHERE status = 'success') AS ok,
           count(*) FILTER (WHERE status = 'failed') AS bad,
           min(error) FILTER (WHERE status = 'failed') AS error
    FROM settled GROUP BY job_id, product
), products_updated AS (
    UPDATE product_status ps SET
        chunks_success = ps.chunks_success + pp.ok,
        chunks_failed = ps.chunks_failed + pp.bad,
        error = coalesce(ps.error, pp.error),
        status = CASE
            WHEN ps.chunks_success + pp.ok + ps.chunks_failed + pp.bad < ps.chunks_total THEN 'running'
            WHEN ps.chunks_failed + pp.bad > 0 THEN 'failed'
            ELSE 'success' END,
        created_at = now()
    FROM per_product pp
    WHERE ps.job_id = pp.job_id AND ps.product = pp.product AND ps.status IN ('waiting', 'running')
    RETURNING ps.job_id, ps.status
)
SELECT (SELECT count(*) FROM settled) AS settled,
       (SELECT count(*) FROM input i
        WHERE NOT EXISTS (SELECT 1 FROM settled s
                          WHERE s.task_id = i.task_id AND s.job_id = i.job_id AND s.product = i.product)) AS stale,
       ARRAY(SELECT DISTINCT job_id FROM products_updated WHERE status IN ('success', 'failed')
             UNION
             SELECT DISTINCT i.job_id FROM input i
             WHERE NOT EXISTS (SELECT 1 FROM settled s
                               WHERE s.task_id = i.task_id AND s.job_id = i.job_id AND s.product = i.product))
           AS to_check
"""

# Ends the jobs among $1 whose every product has ended (a job without products has);
# returns them with their status.
FINISH_JOBS = """
WITH outcome AS (
    SELECT j.id AS job_id,
           coalesce(bool_and(ps.status IN ('success', 'failed', 'cancelled', 'skipped')), true) AS ended,
           coalesce(bool_or(ps.status = 'failed'), false) AS any_failed,
           jsonb_agg(ps.product || ': ' || coalesce(ps.error, ps.status) ORDER BY ps.product)
               FILTER (WHERE ps.status IN ('failed', 'skipped')) AS errors
    FROM unnest($1::bigint[]) AS j(id) LEFT JOIN product_status ps ON ps.job_id = j.id
    GROUP BY j.id
), finished AS (
    UPDATE jobs j SET
        status = CASE WHEN o.any_failed THEN 'failed' ELSE 'completed' END,
        errors = o.errors,
        finished_at = now(),
        updated_at = now()
    FROM outcome o
    WHERE j.id = o.job_id AND o.ended AND j.status = 'running'
    RETURNING j.id, j.status, j.finished_at
), queued AS (
    INSERT INTO retention_queue (finished_at, job_id) SELECT finished_at, id FROM finished
), no_longer_running AS (
    DELETE FROM running_jobs r USING finished f WHERE r.job_id = f.id
)
SELECT id, status FROM finished
"""


async def finish_jobs(connection: asyncpg.Connection, job_ids: list[int]) -> tuple[list[int], list[int]]:
    """End those of these jobs whose products have all ended: (completed, failed) ids."""
    if not job_ids:
        return [], []
    rows = await connection.fetch(FINISH_JOBS, sorted(job_ids))
    return [r["id"] for r in rows if r["status"] == "completed"], [r["id"] for r in rows if r["status"] == "failed"]


# Results settled per statement, at most. A batch of acknowledgements can carry hundreds
# of thousands (a backlog drained after a product was down); one statement for all of
# them, with the lifecycle-event triggers (migrations/0008), ran past the connection's
# command timeout under load and was retried in place. Slices keep every statement a few
# seconds long, and a row of lifecycle events small; each commits on its own, which is
# safe: settling is idempotent.
SETTLE_SLICE = 5_000


async def apply_acks(connection: asyncpg.Connection, results: list[ChunkResult]) -> AckOutcome:
    settled = stale = 0
    completed: list[int] = []
    failed: list[int] = []
    for start in range(0, len(results), SETTLE_SLICE):
        outcome = await _apply_slice(connection, results[start : start + SETTLE_SLICE])
        settled += outcome.settled
        stale += outcome.stale
        completed += outcome.completed
        failed += outcome.failed
    return AckOutcome(settled, stale, completed, failed)


async def _apply_slice(connection: asyncpg.Connection, results: list[ChunkResult]) -> AckOutcome:
    if not results:
        return AckOutcome(0, 0, [], [])
    row = await connection.fetchrow(
        SETTLE_CHUNKS,
        [r.task_id for r in results],
        [r.job_id for r in results],
        [r.product for r in results],
        [r.status for r in results],
        [r.error for r in results],
    )
    assert row is not None
    completed, failed = await finish_jobs(connection, row["to_check"])
    return AckOutcome(settled=row["settled"], stale=row["stale"], completed=completed, failed=failed)
