"""The product role's reads and writes: which jobs were cancelled, and marking a product
`running` for a task that takes a while."""

from __future__ import annotations

import asyncpg


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
