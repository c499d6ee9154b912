"""Acknowledgements: settle chunks, roll them up into product status and job status.

A whole batch of acknowledgements is applied with one statement. Each level counts
only transitions it actually made (a chunk leaves `waiting` once, a product leaves
`waiting`/`running` once, a job leaves `running` once), so a redelivered
acknowledgement changes nothing. Locking the jobs first, in id order, serialises
concurrent batches that touch the same job without deadlocks.
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


APPLY_ACKS = """
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
    RETURNING ps.job_id, ps.product, ps.status, ps.error
), per_job AS (
    SELECT job_id,
           count(*) FILTER (WHERE status = 'success') AS ok,
           count(*) FILTER (WHERE status = 'failed') AS bad,
           jsonb_agg(product || ': ' || coalesce(error, 'failed')) FILTER (WHERE status = 'failed') AS errs
    FROM products_updated GROUP BY job_id
), jobs_updated AS (
    UPDATE jobs j SET
        products_success = j.products_success + pj.ok,
        products_failed = j.products_failed + pj.bad,
        errors = CASE WHEN pj.errs IS NULL THEN j.errors ELSE coalesce(j.errors, '[]'::jsonb) || pj.errs END,
        status = CASE
            WHEN j.products_success + pj.ok + j.products_failed + pj.bad < j.products_total THEN j.status
            WHEN j.products_failed + pj.bad > 0 THEN 'failed'
            ELSE 'completed' END,
        finished_at = CASE
            WHEN j.products_success + pj.ok + j.products_failed + pj.bad < j.products_total THEN NULL
            ELSE now() END,
        updated_at = now()
    FROM per_job pj
    WHERE j.id = pj.job_id AND j.status = 'running'
    RETURNING j.id, j.status
)
SELECT (SELECT count(*) FROM settled) AS settled,
       ARRAY(SELECT id FROM jobs_updated WHERE status = 'completed') AS completed,
       ARRAY(SELECT id FROM jobs_updated WHERE status = 'failed') AS failed
"""


async def apply_acks(connection: asyncpg.Connection, results: list[ChunkResult]) -> AckOutcome:
    if not results:
        return AckOutcome(0, 0, [], [])
    job_ids = sorted({result.job_id for result in results})
    async with connection.transaction():
        await connection.execute(
            "SELECT 1 FROM (SELECT id FROM jobs WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE) AS locked",
            job_ids,
        )
        row = await connection.fetchrow(
            APPLY_ACKS,
            [r.task_id for r in results],
            [r.job_id for r in results],
            [r.product for r in results],
            [r.status for r in results],
            [r.error for r in results],
        )
    assert row is not None
    return AckOutcome(
        settled=row["settled"],
        stale=len(results) - row["settled"],
        completed=list(row["completed"]),
        failed=list(row["failed"]),
    )


async def start_product_work(connection: asyncpg.Connection, product: str, job_ids: list[int]) -> set[int]:
    """Mark the product `running` for these jobs; returns those of them that are cancelled."""
    rows = await connection.fetch(
        """
        WITH marked AS (
            UPDATE product_status SET status = 'running', created_at = now()
            WHERE job_id = ANY($1::bigint[]) AND product = $2 AND status = 'waiting'
        )
        SELECT id FROM jobs WHERE id = ANY($1::bigint[]) AND status = 'cancelled'
        """,
        job_ids,
        product,
    )
    return {row["id"] for row in rows}
