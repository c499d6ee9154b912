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


async def _legacy_job(connection: asyncpg.Connection, job: NewJob, key: str) -> int | None:
    """The job the previous release made for this key (it kept the key in the request id,
    shared by both route families, with no fingerprint): only if it is the same request."""
    row = await connection.fetchrow(
        "SELECT id, action, reference_id, start_at, identity_count, dataset_id, display_name, description"
        " FROM jobs WHERE project_id = $1 AND request_id = $2",
        job.project_id,
        f"api:{job.project_id}:{key}",
    )
    if row is None:
        return None
    same = (row["action"], row["start_at"], row["identity_count"], row["dataset_id"]) == (
        job.action,
        job.start_at,
        len(job.identities),
        job.dataset_id,
    ) and (
        row["reference_id"] == job.reference_id
        if job.action == "delete_user_data"
        else (row["display_name"], row["description"]) == (job.display_name, job.description)
    )
    if not same:
        raise IdempotencyKeyReusedError
    legacy_id: int = row["id"]
    return legacy_id


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
        legacy = await _legacy_job(connection, job, key)
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
