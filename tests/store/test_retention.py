"""Identity values are replaced by keyed hashes after retention, and still verifiable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg

from tests.fakes import fake_session
from tests.support import end_job
from worker.roles.maintenance import MaintenanceRole
from worker.store.jobs import NewJob, create_jobs
from worker.store.retention import hash_expired_identities, identity_hash, identity_in_job, redact, shown_hash

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


async def test_a_large_job_is_hashed_in_bounded_steps_and_leaves_the_queue_with_the_last(
    pool: asyncpg.Pool, make_project: Callable[..., Awaitable[tuple[int, str]]]
) -> None:
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        created = await create_jobs(
            connection,
            [
                NewJob(f"big-{project_id}", project_id, [("email", f"u{i}@example.com") for i in range(12_000)]),
                NewJob(f"small-{project_id}", project_id, [("email", "small@example.com")]),
            ],
            [],
            None,
        )
        big, small = created.values()
        await end_job(connection, big, "completed", ago=timedelta(days=9))
        await end_job(connection, small, "completed", ago=timedelta(days=8))
        steps = []
        while True:
            step = await hash_expired_identities(connection, KEY, timedelta(days=7), max_identities=5000)
            if step == (0, 0):
                break
            steps.append(step)
        # Never more than 5,000 values in a step; each job leaves the queue with its last value.
        assert steps == [(0, 5000), (0, 5000), (1, 2000), (1, 1)]
        assert (
            await connection.fetchval("SELECT count(*) FROM retention_queue WHERE job_id = ANY($1)", [big, small]) == 0
        )
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM job_identities WHERE job_id = $1 AND value IS NOT NULL", big
            )
            == 0
        )
        hashed_at = await connection.fetch("SELECT identities_hashed_at FROM jobs WHERE id = ANY($1)", [big, small])
        assert all(row["identities_hashed_at"] is not None for row in hashed_at)


async def test_maintenance_round_hashes(
    pool: asyncpg.Pool, make_project: Callable[..., Awaitable[tuple[int, str]]]
) -> None:
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        created = await create_jobs(
            connection,
            [NewJob(f"maint-{project_id}", project_id, [("userId", "u1"), ("userId", "u2")])],
            [],
            None,
        )
        [job_id] = created.values()
        await end_job(connection, job_id, "cancelled")
    maintenance = MaintenanceRole(pool, hash_key=KEY, retention=timedelta(0), step=1, interval=60)
    session = fake_session()[0]
    # Other tests' ended jobs share the queue: rounds go on while a round is full.
    for _ in range(10_000):
        if not await maintenance.tick(session):
            break
    values = await pool.fetch("SELECT value FROM job_identities WHERE job_id = $1", job_id)
    assert [row["value"] for row in values] == [None, None]
    assert maintenance.hashed_jobs >= 1


def test_redaction_is_one_pass_and_leaves_earlier_hashes_whole() -> None:
    """Found in review: replacing value after value re-scanned the hashes already written;
    user ids 0..9 grew a description to 68 million characters."""
    values = {str(i): shown_hash(identity_hash(KEY, "userId", str(i))) for i in range(10)}
    text = "users " + ", ".join(values) + " and user 10"
    redacted = redact(text, values)
    assert redacted.count("hmac:") == 10 + 2  # "10" is "1" then "0": each digit is a value
    assert len(redacted) < 1000
    again = redact(redacted, values)  # a later step sees the hashes: left as they are
    assert again == redacted
    assert redact("ab", {"a": "hmac:" + "0" * 64, "ab": "hmac:" + "1" * 64}) == "hmac:" + "1" * 64


async def test_error_texts_lose_identity_values_too(
    pool: asyncpg.Pool, make_project: Callable[..., Awaitable[tuple[int, str]]]
) -> None:
    """Found in review: a product's error text (an external product's may quote what it
    failed on) stayed in product_status, task_chunks and the job's errors."""
    project_id, _ = await make_project()
    value = "quoted.person@example.com"
    async with pool.acquire() as connection:
        [job_id] = (
            await create_jobs(connection, [NewJob(f"err-{project_id}", project_id, [("email", value)])], ["crm"], None)
        ).values()
        error = f"crm: no account for {value}"
        await connection.execute(
            "UPDATE product_status SET status = 'failed', error = $2 WHERE job_id = $1", job_id, error
        )
        await connection.execute(
            "INSERT INTO task_chunks (job_id, product, chunk_no, task_id, seq_from, seq_to, status, error)"
            " VALUES ($1, 'crm', 0, gen_random_uuid(), 0, 1, 'failed', $2)",
            job_id,
            error,
        )
        await connection.execute("UPDATE jobs SET errors = $2 WHERE id = $1", job_id, [f"crm: {error}"])
        await end_job(connection, job_id, "failed", ago=timedelta(days=8))
        while (await hash_expired_identities(connection, KEY, timedelta(days=7)))[1]:
            pass
        texts = await connection.fetchval(
            "SELECT (SELECT error FROM product_status WHERE job_id = $1)"
            " || (SELECT error FROM task_chunks WHERE job_id = $1) || (SELECT errors::text FROM jobs WHERE id = $1)",
            job_id,
        )
    assert value not in texts
    assert texts.count("hmac:") == 3
