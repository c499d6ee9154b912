"""Operator views of jobs (the CLI's `jobs list|show`): never identity values, only counts."""

from __future__ import annotations

from typing import Any

import asyncpg

from worker.store.jobs import JOB_COLUMNS


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
