"""The console overview's summary of settled jobs (migration 0017), and its upkeep.

A job is counted in exactly one of three places:
- the summary (`overview_days`, `overview_products`), once it is settled: ended, with no
  product still waiting or running. A settled job's row no longer changes, except when
  a failed job is retried or a job is deleted: both take it back out (`unsettle`);
- `overview_pending`, a job at or below the watermark that was not settled when the
  pass went past it (the few active jobs): counted live, by primary key;
- above the watermark: counted live, through the (project_id, id) index.

The pass (`settle`) and `unsettle` serialise on one advisory lock; the hot path
(intake, dispatch, acks) takes no lock and writes none of these tables.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg

# pg_advisory_xact_lock key of the summary's writers (the pass, retries, deletions).
SUMMARY_LOCK = 0x0E5E_5717
# The pass only goes past jobs created this long ago, and never past one created
# after the oldest open writing transaction began: a job whose id is taken but not yet
# committed must stay above the watermark (see `_cutoff`).
SETTLE_MARGIN = timedelta(minutes=1)

# A candidate: a job just past the watermark, or a pending one.
_SETTLED = """
    status IN ('completed', 'failed', 'cancelled')
    AND NOT EXISTS (SELECT 1 FROM product_status ps WHERE ps.job_id = c.id AND ps.status IN ('waiting', 'running'))
"""

# One statement, so one snapshot: a job is summarised or kept pending, never both or
# neither, whatever changes while the pass runs.
SETTLE_SQL = f"""
WITH candidate AS (
    SELECT id, project_id, status, created_at, finished_at, id > $1 AS new FROM jobs WHERE id > $1 AND id <= $2
    UNION ALL
    SELECT j.id, j.project_id, j.status, j.created_at, j.finished_at, false FROM overview_pending p
    JOIN jobs j ON j.id = p.job_id
), sorted AS (
    SELECT c.*, {_SETTLED} AS settled FROM candidate c
), settled AS (
    SELECT id, project_id, status, (created_at AT TIME ZONE 'UTC')::date AS received_day,
           (coalesce(finished_at, created_at) AT TIME ZONE 'UTC')::date AS finished_day
    FROM sorted WHERE settled
), kept AS (
    INSERT INTO overview_pending (job_id) SELECT id FROM sorted WHERE new AND NOT settled
), left_pending AS (
    DELETE FROM overview_pending p USING settled s WHERE p.job_id = s.id
), days AS (
    INSERT INTO overview_days AS d (project_id, status, received_day, finished_day, n)
    SELECT project_id, status, received_day, finished_day, count(*) FROM settled
    GROUP BY project_id, status, received_day, finished_day
    ON CONFLICT (project_id, received_day, status, finished_day) DO UPDATE SET n = d.n + excluded.n
), products AS (
    INSERT INTO overview_products AS o (project_id, received_day, product, n, failed, finished)
    SELECT s.project_id, s.received_day, ps.product, count(*), count(*) FILTER (WHERE ps.status = 'failed'),
           count(*) FILTER (WHERE ps.status IN ('success', 'failed'))
    FROM settled s JOIN product_status ps ON ps.job_id = s.id
    GROUP BY s.project_id, s.received_day, ps.product
    ON CONFLICT (project_id, received_day, product)
    DO UPDATE SET n = o.n + excluded.n, failed = o.failed + excluded.failed, finished = o.finished + excluded.finished
)
SELECT count(*) FROM settled
"""  # noqa: S608 - fixed fragments only

# A settled job leaving the summary: its counts are taken off and it is kept pending
# (counted live) until the pass settles it again, or until it is deleted.
UNSETTLE_SQL = """
WITH gone AS (
    SELECT j.id, j.project_id, j.status, (j.created_at AT TIME ZONE 'UTC')::date AS received_day,
           (coalesce(j.finished_at, j.created_at) AT TIME ZONE 'UTC')::date AS finished_day
    FROM jobs j, overview_watermark w
    WHERE j.id = ANY($1::bigint[]) AND j.id <= w.job_id
      AND NOT EXISTS (SELECT 1 FROM overview_pending p WHERE p.job_id = j.id)
), days AS (
    UPDATE overview_days d SET n = d.n - g.n
    FROM (SELECT project_id, status, received_day, finished_day, count(*) AS n FROM gone
          GROUP BY project_id, status, received_day, finished_day) g
    WHERE d.project_id = g.project_id AND d.status = g.status AND d.received_day = g.received_day
      AND d.finished_day = g.finished_day
), products AS (
    UPDATE overview_products o SET n = o.n - g.n, failed = o.failed - g.failed, finished = o.finished - g.finished
    FROM (SELECT g.project_id, g.received_day, ps.product, count(*) AS n,
                 count(*) FILTER (WHERE ps.status = 'failed') AS failed,
                 count(*) FILTER (WHERE ps.status IN ('success', 'failed')) AS finished
          FROM gone g JOIN product_status ps ON ps.job_id = g.id
          GROUP BY g.project_id, g.received_day, ps.product) g
    WHERE o.project_id = g.project_id AND o.received_day = g.received_day AND o.product = g.product
)
INSERT INTO overview_pending (job_id) SELECT id FROM gone
"""


async def _cutoff(connection: asyncpg.Connection, watermark: int, step: int, margin: timedelta) -> int:
    """The highest id the pass may go past: jobs created before the margin and before the
    oldest open writing transaction of the database (whose jobs may hold lower ids, not
    yet visible), at most `step` jobs on."""
    found: int | None = await connection.fetchval(
        """
        WITH oldest AS (
            SELECT least(now() - $3::interval, min(xact_start)) AS before FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL
        )
        SELECT max(id) FROM (SELECT id, created_at FROM jobs WHERE id > $1 ORDER BY id LIMIT $2) j, oldest
        WHERE j.created_at < oldest.before
        """,
        watermark,
        step,
        margin,
    )
    return found if found is not None else watermark


async def settle(connection: asyncpg.Connection, step: int, margin: timedelta = SETTLE_MARGIN) -> int:
    """One pass: summarise up to `step` jobs past the watermark and every pending job now
    settled. Returns how many jobs were settled."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", SUMMARY_LOCK)
        watermark: int = await connection.fetchval("SELECT job_id FROM overview_watermark FOR UPDATE")
        upto = await _cutoff(connection, watermark, step, margin)
        settled: int = await connection.fetchval(SETTLE_SQL, watermark, upto)
        await connection.execute("UPDATE overview_watermark SET job_id = $1", upto)
    return settled


async def unsettle(connection: asyncpg.Connection, job_ids: list[int]) -> None:
    """Take settled jobs out of the summary before their row or products change (a retry)
    or go (a deletion). Call inside the transaction that makes the change."""
    await connection.execute("SELECT pg_advisory_xact_lock($1)", SUMMARY_LOCK)
    await connection.execute(UNSETTLE_SQL, job_ids)
