"""The console overview's counts: the summary of settled jobs (worker.store.overview_summary)
plus a live count of the rest, the jobs above the watermark and the pending ones.

Both parts are read in one repeatable-read transaction, so a pass that settles jobs
meanwhile moves none of them from one part to the other under the reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

JOB_STATUSES = ("scheduled", "running", "completed", "failed", "cancelled")
# Due within this long and not finished: at risk of being overdue.
AT_RISK = timedelta(days=3)
CHART_DAYS = 14
RATES_DAYS = 30


@dataclass(frozen=True)
class Overview:
    by_status: dict[str, int]
    overdue: int
    at_risk: int
    per_day: list[tuple[str, int, int]]  # (day, received, completed)
    products: list[tuple[str, int, int]]  # (product, failed, finished)


# The jobs not in the summary: above the watermark (the (project_id, id) index), and
# pending (by primary key). A few thousand at most between two maintenance passes.
_LIVE = """
live AS (
    SELECT j.id, j.status, j.created_at, j.finished_at, j.due_at FROM jobs j, overview_watermark w
    WHERE j.project_id = ANY($1::bigint[]) AND j.id > w.job_id
    UNION ALL
    SELECT j.id, j.status, j.created_at, j.finished_at, j.due_at FROM overview_pending p JOIN jobs j ON j.id = p.job_id
    WHERE j.project_id = ANY($1::bigint[])
)"""

COUNTS_SQL = f"""
WITH {_LIVE}, counted AS (
    SELECT status, (created_at AT TIME ZONE 'UTC')::date AS received_day,
           (finished_at AT TIME ZONE 'UTC')::date AS finished_day, 1 AS n,
           coalesce(status IN ('scheduled', 'running') AND due_at < now(), false)::int AS overdue,
           coalesce(status IN ('scheduled', 'running') AND due_at >= now()
                    AND due_at < now() + $3::interval, false)::int AS at_risk
    FROM live
    UNION ALL
    SELECT status, received_day, finished_day, n, 0, 0 FROM overview_days WHERE project_id = ANY($1::bigint[])
)
SELECT status, received_day, completed_day, GROUPING(status, received_day, completed_day) AS grouping_set,
       sum(n)::bigint AS n, sum(overdue)::bigint AS overdue, sum(at_risk)::bigint AS at_risk
FROM (
    SELECT status, n, overdue, at_risk, CASE WHEN received_day >= $2 THEN received_day END AS received_day,
           CASE WHEN status = 'completed' AND finished_day >= $2 THEN finished_day END AS completed_day
    FROM counted
) c
GROUP BY GROUPING SETS ((status), (received_day), (completed_day))
"""  # noqa: S608 - fixed fragments only
BY_STATUS, BY_RECEIVED, BY_COMPLETED = 0b011, 0b101, 0b110  # GROUPING(): 1 where a column is not grouped

# Product failure rates of the jobs received in the last RATES_DAYS days.
PRODUCTS_SQL = f"""
WITH {_LIVE}
SELECT product, sum(failed)::bigint AS failed, sum(finished)::bigint AS finished FROM (
    SELECT ps.product, (ps.status = 'failed')::int AS failed, (ps.status IN ('success', 'failed'))::int AS finished,
           1 AS n
    FROM live l JOIN product_status ps ON ps.job_id = l.id WHERE l.created_at >= $2
    UNION ALL
    SELECT product, failed, finished, n FROM overview_products
    WHERE project_id = ANY($1::bigint[]) AND received_day >= $2::timestamptz AT TIME ZONE 'UTC'
) p
GROUP BY product HAVING sum(n) > 0 ORDER BY product
"""  # noqa: S608 - fixed fragments only


async def overview(connection: asyncpg.Connection, project_ids: list[int]) -> Overview:
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=back) for back in range(CHART_DAYS - 1, -1, -1)]
    rates_from = datetime.combine(today - timedelta(days=RATES_DAYS), datetime.min.time(), UTC)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        rows = await connection.fetch(COUNTS_SQL, project_ids, days[0], AT_RISK)
        product_rows = await connection.fetch(PRODUCTS_SQL, project_ids, rates_from)
    by_status = dict.fromkeys(JOB_STATUSES, 0)
    received: dict[date, int] = {}
    completed: dict[date, int] = {}
    overdue = at_risk = 0
    for row in rows:
        if row["grouping_set"] == BY_STATUS:
            by_status[row["status"]] = row["n"]
            overdue += row["overdue"]
            at_risk += row["at_risk"]
        elif row["grouping_set"] == BY_RECEIVED and row["received_day"] is not None:
            received[row["received_day"]] = row["n"]
        elif row["grouping_set"] == BY_COMPLETED and row["completed_day"] is not None:
            completed[row["completed_day"]] = row["n"]
    return Overview(
        by_status=by_status,
        overdue=overdue,
        at_risk=at_risk,
        per_day=[(day.isoformat(), received.get(day, 0), completed.get(day, 0)) for day in days],
        products=[(row["product"], row["failed"], row["finished"]) for row in product_rows],
    )
