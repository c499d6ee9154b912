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

import json
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
    deleted: int | None = None
    not_found: int | None = None
    # A failed result's identities that failed, when not all did: (namespace, value, reason).
    failures: tuple[tuple[str, str, str | None], ...] = ()


@dataclass(frozen=True)
class AckOutcome:
    settled: int
    stale: int
    completed: list[int]
    failed: list[int]


# `(c.status || '') = 'waiting'` below, not `c.status = 'waiting'`: the same test, but one
# the planner cannot look up in the column's statistics, so it assumes its default share
# of rows (0.5 %) instead of what ANALYZE last saw. Taken when no chunk was waiting (the
# end of a burst), those statistics had it expect one waiting chunk, and it put a
# sequential scan of task_chunks outside a rescan of the batch's results: with 15,000
# chunks then waiting, one ack batch took 9.3 s, and no job completed meanwhile
# (auto_explain, in the bench). tests/store/test_settle_plan.py builds that moment.
#
# Counts and failed identities are settled with the chunk they belong to, in the same
# statement. Failure rows are written only for identities a product named; a chunk that
# failed as a whole writes none (see migrations/0013). The chunk's identities are found
# by the names given (`named`).
SETTLE_CHUNKS = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])
        AS t(task_id, job_id, product, status, error, deleted, not_found)
), failures AS (
    SELECT * FROM unnest($8::uuid[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[])
        AS f(task_id, job_id, product, namespace, value, reason)
), carried AS MATERIALIZED (
    -- The identities of each chunk with named failures, read once per chunk (by its seq
    -- range) and then hashed against the names: matched name by name, each name scanned
    -- its whole chunk (a 10,000-identity chunk with 1,000 names took 8 s).
    -- Compared byte by byte ("C"): equality is the same, and sorting for a merge join
    -- through the database's locale cost most of the statement.
    SELECT c.task_id, c.job_id, c.product, c.chunk_no, ji.seq,
           ji.namespace COLLATE "C" AS namespace, ji.value COLLATE "C" AS value
    FROM (SELECT DISTINCT task_id, job_id, product FROM failures) AS fc
    JOIN task_chunks c ON c.task_id = fc.task_id AND c.job_id = fc.job_id AND c.product = fc.product
                      AND (c.status || '') = 'waiting'
    JOIN job_identities ji ON ji.job_id = c.job_id AND ji.seq >= c.seq_from AND ji.seq < c.seq_to
), named AS MATERIALIZED (
    SELECT ca.task_id, ca.job_id, ca.product, ca.chunk_no, ca.seq, min(f.reason) AS reason
    FROM carried ca
    JOIN failures f ON f.task_id = ca.task_id AND f.job_id = ca.job_id AND f.product = ca.product
                   AND f.namespace = ca.namespace AND f.value = ca.value
    GROUP BY ca.task_id, ca.job_id, ca.product, ca.chunk_no, ca.seq
), named_counts AS (
    SELECT task_id, job_id, product, count(*)::int AS n FROM named GROUP BY task_id, job_id, product
), settled AS (
    UPDATE task_chunks c SET status = i.status, error = i.error, acked_at = now(),
        deleted = CASE WHEN i.deleted IS NULL THEN c.deleted ELSE coalesce(c.deleted, 0) + i.deleted END,
        not_found = CASE WHEN i.not_found IS NULL THEN c.not_found ELSE coalesce(c.not_found, 0) + i.not_found END,
        -- A chunk sent again with only its failed identities, failing as a whole again:
        -- the same identities failed (its failure rows stay).
        identities_failed = CASE WHEN i.status = 'success' THEN 0
                                 WHEN nc.n IS NOT NULL THEN nc.n
                                 WHEN c.failures_listed THEN c.identities_failed
                                 ELSE c.seq_to - c.seq_from END,
        failures_listed = CASE WHEN i.status = 'success' THEN NULL
                               WHEN nc.n IS NOT NULL THEN true
                               ELSE c.failures_listed END
    FROM input i
    LEFT JOIN named_counts nc ON nc.task_id = i.task_id AND nc.job_id = i.job_id AND nc.product = i.product
    WHERE c.task_id = i.task_id AND c.job_id = i.job_id AND c.product = i.product AND (c.status || '') = 'waiting'
    RETURNING c.task_id, c.job_id, c.product, c.seq_from, c.seq_to, c.status, c.error, c.retries,
              c.identities_failed, nc.n IS NOT NULL AS named_now,
              i.deleted AS new_deleted, i.not_found AS new_not_found
), recorded AS (
    INSERT INTO identity_failures (job_id, product, seq, chunk_no, reason)
    SELECT n.job_id, n.product, n.seq, n.chunk_no, n.reason
    FROM named n WHERE (n.task_id, n.job_id, n.product) IN (SELECT task_id, job_id, product FROM settled)
    ON CONFLICT (job_id, product, seq) DO UPDATE SET reason = excluded.reason, failed_at = excluded.failed_at
), per_product AS (
    SELECT job_id, product,
           count(*) FILTER (WHERE status = 'success') AS ok,
           count(*) FILTER (WHERE status = 'failed') AS bad,
           min(error) FILTER (WHERE status = 'failed') AS error,
           sum(new_deleted)::bigint AS deleted,
           sum(new_not_found)::bigint AS not_found,
           sum(identities_failed)::int AS identities_failed
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
        deleted = CASE WHEN pp.deleted IS NULL THEN ps.deleted ELSE coalesce(ps.deleted, 0) + pp.deleted END,
        not_found = CASE WHEN pp.not_found IS NULL THEN ps.not_found ELSE coalesce(ps.not_found, 0) + pp.not_found END,
        identities_failed = coalesce(ps.identities_failed, 0) + pp.identities_failed,
        finished_at = CASE
            WHEN ps.chunks_success + pp.ok + ps.chunks_failed + pp.bad < ps.chunks_total THEN NULL
            ELSE now() END,
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
           AS to_check,
       -- Chunks sent again whose earlier failure rows may now be done (see clear_retried).
       (SELECT json_agg(json_build_array(job_id, product, seq_from, seq_to)) FROM settled
        WHERE retries IS NOT NULL AND (status = 'success' OR named_now)) AS retried
"""

# A chunk sent again (worker.store.retry_failed) that succeeded, or failed naming its
# identities anew: its failure rows not written by this transaction are done. Driven by
# the few chunks in $1.. (never by a scan of identity_failures, which grows with every
# failure kept), in the settle's own transaction.
CLEAR_RETRIED = """
DELETE FROM identity_failures f
USING unnest($1::bigint[], $2::text[], $3::int[], $4::int[]) AS r(job_id, product, seq_from, seq_to)
WHERE f.job_id = r.job_id AND f.product = r.product AND f.seq >= r.seq_from AND f.seq < r.seq_to
  AND f.failed_at < now()
"""

# Ends the jobs among $1 whose every product has ended (a job without products has);
# returns them with their status. A job changed since this statement's snapshot (a retry
# of what failed made it `running` again, worker.store.retry_failed) is left alone: its
# outcome was read before the change; the next acknowledgement or the reconciler ends it.
FINISH_JOBS = """
WITH outcome AS (
    SELECT j.id AS job_id, (SELECT updated_at FROM jobs WHERE id = j.id) AS seen_updated_at,
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
    WHERE j.id = o.job_id AND o.ended AND j.status = 'running' AND j.updated_at IS NOT DISTINCT FROM o.seen_updated_at
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
    failures = [(r, namespace, value, reason) for r in results for namespace, value, reason in r.failures]
    # One transaction: the settle and the clearing of what a retried chunk no longer
    # fails commit together.
    async with connection.transaction():
        if failures:
            # Named failures are matched against their chunks' identities by a hash join;
            # the planner, which cannot see how many identities a chunk holds, chose a
            # merge join that sorted them all on disk (100,000 identities, 1,000 names:
            # 0.64 s; hashed, 0.25 s).
            await connection.execute("SET LOCAL enable_mergejoin = off")
        row = await _settle(connection, results, failures)
        assert row is not None
        if row["retried"] is not None:
            await clear_retried(connection, json.loads(row["retried"]))
    completed, failed = await finish_jobs(connection, row["to_check"])
    return AckOutcome(settled=row["settled"], stale=row["stale"], completed=completed, failed=failed)


async def clear_retried(connection: asyncpg.Connection, chunks: list[list[object]]) -> None:
    await connection.execute(CLEAR_RETRIED, *(list(column) for column in zip(*chunks, strict=True)))


async def _settle(
    connection: asyncpg.Connection,
    results: list[ChunkResult],
    failures: list[tuple[ChunkResult, str, str, str | None]],
) -> asyncpg.Record | None:
    return await connection.fetchrow(
        SETTLE_CHUNKS,
        [r.task_id for r in results],
        [r.job_id for r in results],
        [r.product for r in results],
        [r.status for r in results],
        [r.error for r in results],
        [r.deleted for r in results],
        [r.not_found for r in results],
        [r.task_id for r, _, _, _ in failures],
        [r.job_id for r, _, _, _ in failures],
        [r.product for r, _, _, _ in failures],
        [namespace for _, namespace, _, _ in failures],
        [value for _, _, value, _ in failures],
        [reason for _, _, _, reason in failures],
    )
