"""Acknowledgements: settle chunks, roll them up into product status and job status.

A whole batch of acknowledgements is applied with one statement. Each level counts
only transitions it actually made (a chunk leaves `waiting` once, a product leaves
`waiting`/`running` once, a job leaves `running` once), so a redelivered
acknowledgement changes nothing. A job ends when every one of its products has; that is
checked only for jobs whose product just ended, under a per-job lock so that two
batches finishing a job's last two products cannot both miss it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

# The first key of the two-key advisory lock; the job id (mod 2^31-1) is the second.
JOB_LOCK_NAMESPACE = 74_201


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
    RETURNING c.job_id, c.product, c.status, c.error
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
       ARRAY(SELECT DISTINCT job_id FROM products_updated WHERE status IN ('success', 'failed')) AS touched
"""

# Runs after SETTLE_CHUNKS in the same transaction, so it sees the product statuses just
# written; the per-job advisory locks make sure a concurrent batch sees them too.
FINISH_JOBS = """
WITH outcome AS (
    SELECT job_id,
           bool_and(status IN ('success', 'failed', 'cancelled')) AS ended,
           bool_or(status = 'failed') AS any_failed,
           jsonb_agg(product || ': ' || coalesce(error, 'failed') ORDER BY product)
               FILTER (WHERE status = 'failed') AS errors
    FROM product_status WHERE job_id = ANY($1::bigint[])
    GROUP BY job_id
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
)
SELECT id, status FROM finished
"""


async def apply_acks(connection: asyncpg.Connection, results: list[ChunkResult]) -> AckOutcome:
    if not results:
        return AckOutcome(0, 0, [], [])
    job_ids = sorted({result.job_id for result in results})
    async with connection.transaction():
        # Serialise batches that touch the same job, in id order so they cannot deadlock.
        # Advisory locks rather than row locks: they cost no write to the jobs table.
        await connection.execute(
            "SELECT count(pg_advisory_xact_lock($2::int, (id % 2147483647)::int))"
            " FROM (SELECT unnest($1::bigint[]) AS id ORDER BY 1) AS ordered",
            job_ids,
            JOB_LOCK_NAMESPACE,
        )
        row = await connection.fetchrow(
            SETTLE_CHUNKS,
            [r.task_id for r in results],
            [r.job_id for r in results],
            [r.product for r in results],
            [r.status for r in results],
            [r.error for r in results],
        )
        assert row is not None
        finished = await connection.fetch(FINISH_JOBS, row["touched"]) if row["touched"] else []
    return AckOutcome(
        settled=row["settled"],
        stale=len(results) - row["settled"],
        completed=[r["id"] for r in finished if r["status"] == "completed"],
        failed=[r["id"] for r in finished if r["status"] == "failed"],
    )


async def cancelled_jobs(connection: asyncpg.Connection, job_ids: list[int]) -> set[int]:
    """Those of these jobs that were cancelled: their tasks are acknowledged without work."""
    rows = await connection.fetch("SELECT id FROM jobs WHERE id = ANY($1::bigint[]) AND status = 'cancelled'", job_ids)
    return {row["id"] for row in rows}


async def mark_running(connection: asyncpg.Connection, product: str, job_ids: list[int]) -> None:
    await connection.execute(
        "UPDATE product_status SET status = 'running', created_at = now()"
        " WHERE job_id = ANY($1::bigint[]) AND product = $2 AND status = 'waiting'",
        job_ids,
        product,
    )
