"""Identity values are replaced by keyed hashes after retention, and still verifiable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg

from tests.support import end_job
from worker.maintenance import Maintenance
from worker.settings import Settings
from worker.store.jobs import NewJob, create_jobs
from worker.store.retention import hash_expired_identities, identity_in_job

KEY = b"test-key"


async def test_ended_jobs_keep_only_hashes_after_retention(
    pool: asyncpg.Pool, make_project: Callable[..., Awaitable[tuple[int, str]]]
) -> None:
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        created = await create_jobs(
            connection,
            [
                NewJob(
                    request_id=f"ret-{project_id}-old", project_id=project_id, identities=[("email", "old@example.com")]
                ),
                NewJob(
                    request_id=f"ret-{project_id}-new", project_id=project_id, identities=[("email", "new@example.com")]
                ),
                NewJob(
                    request_id=f"ret-{project_id}-run", project_id=project_id, identities=[("email", "run@example.com")]
                ),
            ],
            ["sessions"],
            None,
        )
        old, new, running = created.values()
        await end_job(connection, old, "completed", ago=timedelta(days=8))
        await end_job(connection, new, "completed")

        jobs, identities = await hash_expired_identities(connection, KEY, timedelta(days=7))
        assert (jobs, identities) == (1, 1)
        assert await hash_expired_identities(connection, KEY, timedelta(days=7)) == (0, 0)  # idempotent

        row = await connection.fetchrow("SELECT value, value_hash FROM job_identities WHERE job_id = $1", old)
        assert row is not None
        assert row["value"] is None
        assert len(row["value_hash"]) == 32
        for job_id in (new, running):
            assert await connection.fetchval("SELECT value FROM job_identities WHERE job_id = $1", job_id) is not None

        # Verification works on hashed and unhashed identities alike, and only with the key.
        assert await identity_in_job(connection, KEY, old, "email", "old@example.com")
        assert not await identity_in_job(connection, KEY, old, "email", "other@example.com")
        assert not await identity_in_job(connection, KEY, old, "userId", "old@example.com")
        assert not await identity_in_job(connection, b"wrong-key", old, "email", "old@example.com")
        assert await identity_in_job(connection, KEY, new, "email", "new@example.com")


async def test_maintenance_round_hashes_and_counts(
    pool: asyncpg.Pool, make_project: Callable[..., Awaitable[tuple[int, str]]], make_settings: Callable[..., Settings]
) -> None:
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        created = await create_jobs(
            connection,
            [
                NewJob(
                    request_id=f"maint-{project_id}",
                    project_id=project_id,
                    identities=[("userId", "u1"), ("userId", "u2")],
                )
            ],
            [],
            None,
        )
        [job_id] = created.values()
        await end_job(connection, job_id, "cancelled")
    maintenance = Maintenance(pool, make_settings(identity_retention=timedelta(0)))
    assert await maintenance.run_once() >= 1
    values = await pool.fetch("SELECT value FROM job_identities WHERE job_id = $1", job_id)
    assert [row["value"] for row in values] == [None, None]
