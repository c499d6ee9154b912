"""Read queries: the HTTP API's (always scoped to the caller's organization) and the
operators' (`jobs list|show`: counts and ids, never identity values)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class PageRequest:
    limit: int
    offset: int
    after_id: int | None = None  # only jobs older than this one (keyset paging)


JOB_COLUMNS = """
    j.id, j.request_id, j.project_id, j.workorder_id, j.bundle_id, j.action, j.dataset_id,
    j.reference_id, j.description, j.display_name, j.created_by, j.status, j.errors,
    j.identity_count, j.created_at, j.updated_at, j.start_at, j.dispatched_at, j.finished_at,
    j.regulation, j.due_at, coalesce(j.dry_run, false) AS dry_run
"""


async def get_job(connection: asyncpg.Connection, job_id: int) -> dict[str, Any] | None:
    row = await connection.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = $1", job_id)  # noqa: S608
    return dict(row) if row is not None else None


async def get_product_status(connection: asyncpg.Connection, job_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Per job, its products' rows: status, chunk counts, what the product did (counts,
    failed identities, retries) and when its work started (its latest retry, else the
    job's dispatch) and ended."""
    rows = await connection.fetch(
        "SELECT ps.job_id, ps.product, ps.status, ps.chunks_total, ps.chunks_success, ps.chunks_failed, ps.error,"
        " ps.created_at, ps.deleted, ps.not_found, ps.identities_failed, ps.retries, ps.finished_at,"
        " coalesce(ps.started_at, j.dispatched_at) AS started_at"
        " FROM product_status ps JOIN jobs j ON j.id = ps.job_id"
        " WHERE ps.job_id = ANY($1::bigint[]) ORDER BY ps.job_id, ps.product",
        job_ids,
    )
    result: dict[int, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
    for row in rows:
        result[row["job_id"]].append(dict(row))
    return result


async def project_id_in_org(connection: asyncpg.Connection, project_key: str, org_id: str) -> int | None:
    project_id: int | None = await connection.fetchval(
        "SELECT id FROM projects WHERE key = $1 AND org_id = $2", project_key, org_id
    )
    return project_id


# Just what the Jobs API shows: decoding fewer columns is most of a list page's cost.
JOBS_VIEW_COLUMNS = (
    "j.id, j.description, j.status, j.project_id, j.action, j.reference_id,"
    " j.created_at, j.updated_at, j.start_at, j.errors, j.regulation, j.due_at, coalesce(j.dry_run, false) AS dry_run"
)


# Both lists find a page's ids first, in the index alone, and read only those rows: an
# OFFSET over full rows read and threw away every row before the page (0.42 s for page
# 4,500 of 200). Deeper than MAX_OFFSET rows, `after` (keyset) is the way on.
MAX_OFFSET = 100_000


async def list_project_jobs(connection: asyncpg.Connection, project_id: int, page: PageRequest) -> list[dict[str, Any]]:
    after = "AND id < $4" if page.after_id is not None else "AND $4::bigint IS NULL"
    rows = await connection.fetch(
        f"""
        WITH page AS (
            SELECT id FROM jobs WHERE project_id = $1 {after} ORDER BY id DESC LIMIT $2 OFFSET $3
        )
        SELECT {JOBS_VIEW_COLUMNS} FROM jobs j JOIN page USING (id) ORDER BY j.id DESC
        """,  # noqa: S608 - fixed fragments only
        project_id,
        page.limit,
        page.offset,
        page.after_id,
    )
    return [dict(row) for row in rows]


async def get_project_job(connection: asyncpg.Connection, project_id: int, job_id: int) -> dict[str, Any] | None:
    row = await connection.fetchrow(
        f"SELECT {JOBS_VIEW_COLUMNS} FROM jobs j WHERE j.id = $1 AND j.project_id = $2",  # noqa: S608
        job_id,
        project_id,
    )
    return dict(row) if row is not None else None


async def get_org_workorder(connection: asyncpg.Connection, org_id: str, workorder: str) -> dict[str, Any] | None:
    """By workorderId (DI-...) or bundleId (BN-...)."""
    column = "bundle_id" if workorder.startswith("BN-") else "workorder_id"
    row = await connection.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM jobs j JOIN projects p ON p.id = j.project_id"  # noqa: S608
        f" WHERE j.{column} = $1 AND p.org_id = $2",
        workorder,
        org_id,
    )
    return dict(row) if row is not None else None


async def list_org_workorders(connection: asyncpg.Connection, org_id: str, page: PageRequest) -> list[dict[str, Any]]:
    """Newest first over every project of the organization. The projects are looked up
    first and passed as values: planned with them, an organization with one small project
    reads its own index entries, not the whole table in id order (tenants' sizes differ
    by millions, which one plan for all cannot know; see worker.db.API_SESSION)."""
    project_ids = await connection.fetchval("SELECT array_agg(id) FROM projects WHERE org_id = $1", org_id)
    if not project_ids:
        return []
    after = "AND id < $4" if page.after_id is not None else "AND $4::bigint IS NULL"
    rows = await connection.fetch(
        f"""
        WITH page AS (
            SELECT id FROM jobs WHERE project_id = ANY($1::bigint[]) {after} ORDER BY id DESC LIMIT $2 OFFSET $3
        )
        SELECT {JOB_COLUMNS} FROM jobs j JOIN page USING (id) ORDER BY j.id DESC
        """,  # noqa: S608 - fixed fragments only
        project_ids,
        page.limit,
        page.offset,
        page.after_id,
    )
    return [dict(row) for row in rows]


async def workorder_job_id(connection: asyncpg.Connection, org_id: str, workorder: str) -> int | None:
    row = await get_org_workorder(connection, org_id, workorder)
    return None if row is None else int(row["id"])


async def list_jobs(
    connection: asyncpg.Connection, project_key: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await connection.fetch(
        f"SELECT {JOB_COLUMNS}, p.key AS project_key FROM jobs j JOIN projects p ON p.id = j.project_id"  # noqa: S608
        " WHERE ($1::text IS NULL OR p.key = $1) AND ($2::text IS NULL OR j.status = $2)"
        " ORDER BY j.id DESC LIMIT $3",
        project_key,
        status,
        limit,
    )
    return [dict(row) for row in rows]


async def list_due_jobs(
    connection: asyncpg.Connection, project_key: str | None, due_before: datetime, limit: int
) -> list[dict[str, Any]]:
    """Active jobs due before a time (overdue ones: before now), soonest due first: read
    through due_watch, which holds only active jobs with a due date."""
    rows = await connection.fetch(
        f"SELECT {JOB_COLUMNS}, p.key AS project_key FROM due_watch w"  # noqa: S608
        " JOIN jobs j ON j.id = w.job_id JOIN projects p ON p.id = j.project_id"
        " WHERE w.due_at <= $2 AND ($1::text IS NULL OR p.key = $1) ORDER BY w.due_at, w.job_id LIMIT $3",
        project_key,
        due_before,
        limit,
    )
    return [dict(row) for row in rows]


async def job_chunks(connection: asyncpg.Connection, job_id: int) -> list[dict[str, Any]]:
    """Per product: chunk counts by status and when the last acknowledgement came."""
    rows = await connection.fetch(
        """
        SELECT product, count(*) AS chunks,
               count(*) FILTER (WHERE status = 'waiting') AS waiting,
               count(*) FILTER (WHERE status = 'success') AS success,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
               count(DISTINCT task_id) AS tasks,
               max(acked_at) AS last_ack
        FROM task_chunks WHERE job_id = $1 GROUP BY product ORDER BY product
        """,
        job_id,
    )
    return [dict(row) for row in rows]
