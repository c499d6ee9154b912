"""The web console's reads: lists with filters, jobs by identity (the overview's
counts: worker.store.overview).

Every query is scoped to one organization's projects, looked up first and passed as
values (as in worker.store.reads.list_org_workorders). Identity values are never
returned: a job found by identity is found through its value or, after retention,
through the keyed hash of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from worker.store.reads import JOB_COLUMNS, MAX_OFFSET
from worker.store.retention import identity_hash


@dataclass(frozen=True)
class JobFilter:
    status: str | None = None
    project_key: str | None = None
    product: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    lookup: str | None = None  # a job id, request id, workorderId or bundleId


async def org_projects(connection: asyncpg.Connection, org_id: str) -> list[dict[str, Any]]:
    rows = await connection.fetch("SELECT id, key, name FROM projects WHERE org_id = $1 ORDER BY name, id", org_id)
    return [dict(row) for row in rows]


def _conditions(found: JobFilter) -> tuple[str, list[Any]]:
    """SQL conditions over `jobs` (as j) for the filter, numbered from $4, and their values."""
    parts: list[str] = []
    values: list[Any] = []

    def add(template: str, value: Any) -> None:
        values.append(value)
        parts.append(template.format(f"${len(values) + 3}"))

    if found.status:
        add("j.status = {}", found.status)
    if found.product:
        add("EXISTS (SELECT 1 FROM product_status ps WHERE ps.job_id = j.id AND ps.product = {})", found.product)
    if found.created_from:
        add("j.created_at >= {}", found.created_from)
    if found.created_to:
        add("j.created_at < {}", found.created_to)
    if found.lookup:
        text = found.lookup.strip()
        if text.isdigit() and len(text) < 19:
            add("j.id = {}::bigint", int(text))
        else:
            add("(j.request_id = {0} OR j.workorder_id = {0} OR j.bundle_id = {0})", text)
    return "".join(f" AND {part}" for part in parts), values


async def list_jobs(
    connection: asyncpg.Connection, project_ids: list[int], found: JobFilter, limit: int, offset: int
) -> list[dict[str, Any]]:
    """A page of the projects' jobs matching the filter, newest first (ids first, then rows)."""
    conditions, values = _conditions(found)
    rows = await connection.fetch(
        f"""
        WITH page AS (
            SELECT j.id FROM jobs j WHERE j.project_id = ANY($1::bigint[]){conditions}
            ORDER BY j.id DESC LIMIT $2 OFFSET $3
        )
        SELECT {JOB_COLUMNS}, p.key AS project_key FROM jobs j JOIN page USING (id)
        JOIN projects p ON p.id = j.project_id ORDER BY j.id DESC
        """,  # noqa: S608 - fixed fragments; every value is a parameter
        project_ids,
        limit,
        min(offset, MAX_OFFSET),
        *values,
    )
    return [dict(row) for row in rows]


async def org_job(connection: asyncpg.Connection, org_id: str, job_id: int) -> dict[str, Any] | None:
    row = await connection.fetchrow(
        f"SELECT {JOB_COLUMNS}, p.key AS project_key FROM jobs j JOIN projects p ON p.id = j.project_id"  # noqa: S608
        " WHERE j.id = $1 AND p.org_id = $2",
        job_id,
        org_id,
    )
    return dict(row) if row is not None else None


# Read through the job_identities hash indexes (migration 0018), one per form of the value.
JOBS_BY_IDENTITY = f"""
    WITH found AS (
        SELECT DISTINCT i.job_id AS id FROM job_identities i JOIN jobs j ON j.id = i.job_id
        WHERE j.project_id = ANY($1::bigint[]) AND i.namespace = $2 AND (i.value = $3 OR i.value_hash = $4)
    )
    SELECT {JOB_COLUMNS}, p.key AS project_key FROM jobs j JOIN found USING (id)
    JOIN projects p ON p.id = j.project_id ORDER BY j.id DESC LIMIT $5
"""  # noqa: S608 - fixed fragments only


async def jobs_by_identity(
    connection: asyncpg.Connection, project_ids: list[int], key: bytes, namespace: str, value: str, *, limit: int = 100
) -> list[dict[str, Any]]:
    """The projects' jobs that carried this identity, by value or (after retention) by its
    keyed hash, newest first."""
    rows = await connection.fetch(
        JOBS_BY_IDENTITY,
        project_ids,
        namespace,
        value,
        identity_hash(key, namespace, value),
        limit,
    )
    return [dict(row) for row in rows]
