"""Idempotency keys of the HTTP API: one job per (project, route family, key), and the
key bound to the request it was first used for."""

from __future__ import annotations

import asyncpg

from worker.errors import ConflictError
from worker.store.jobs import JobSizing, NewJob, create_jobs


class IdempotencyKeyReusedError(ConflictError):
    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used for a different request in this project;"
            " use a new key for a new request"
        )


async def create_once(
    connection: asyncpg.Connection,
    job: NewJob,
    *,
    family: str,
    key: str | None,
    fingerprint: bytes,
    products: list[str],
    notify_channel: str,
    sizing: JobSizing,
) -> int:
    """Create the job, or with a key used before (same project and family) return the job
    it created then; a key used before for another request raises IdempotencyKeyReusedError.

    The key's row is written first, in the job's transaction: a concurrent call with the
    same key waits on it, then finds the job."""
    if key is None:
        created = await create_jobs(connection, [job], products, notify_channel, sizing)
        return created[job.key]
    async with connection.transaction():
        claimed = await connection.fetchval(
            "INSERT INTO idempotency_keys (project_id, family, key, fingerprint, job_id) VALUES ($1, $2, $3, $4, 0)"
            " ON CONFLICT DO NOTHING RETURNING true",
            job.project_id,
            family,
            key,
            fingerprint,
        )
        if not claimed:
            row = await connection.fetchrow(
                "SELECT fingerprint, job_id FROM idempotency_keys WHERE project_id = $1 AND family = $2 AND key = $3",
                job.project_id,
                family,
                key,
            )
            assert row is not None
            if row["fingerprint"] != fingerprint:
                raise IdempotencyKeyReusedError
            job_id: int = row["job_id"]
            return job_id
        # A key the previous release used kept its job in the request id instead.
        legacy = await connection.fetchval(
            "SELECT id FROM jobs WHERE project_id = $1 AND request_id = $2",
            job.project_id,
            f"api:{job.project_id}:{key}",
        )
        if legacy is None:
            legacy = (await create_jobs(connection, [job], products, notify_channel, sizing))[job.key]
        await connection.execute(
            "UPDATE idempotency_keys SET job_id = $4 WHERE project_id = $1 AND family = $2 AND key = $3",
            job.project_id,
            family,
            key,
            legacy,
        )
        created_id: int = legacy
        return created_id
