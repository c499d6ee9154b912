"""The reconciler: what a process of an older release (or a crash) left behind is put
right, and what cannot be is reported."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import asyncpg
import structlog

from tests.fakes import fake_session
from worker.roles.reconciler import ReconcilerRole
from worker.store.jobs import NewJob, create_jobs
from worker.store.reconcile import stuck_jobs

MakeProject = Callable[..., Awaitable[tuple[int, str]]]


async def test_jobs_written_without_their_queue_rows_are_put_on_them(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    """Before: jobs created by old intake or API processes after a migration got no
    dispatch_queue row and were never dispatched; jobs they finished were never hashed."""
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        created = await create_jobs(
            connection, [NewJob(f"old-{project_id}-{i}", project_id, [("userId", f"u{i}")]) for i in range(3)], [], None
        )
        scheduled, running, ended = created.values()
        await connection.execute("DELETE FROM dispatch_queue WHERE job_id = ANY($1)", [scheduled, running, ended])
        await connection.execute("UPDATE jobs SET status = 'running', dispatched_at = now() WHERE id = $1", running)
        await connection.execute("UPDATE jobs SET status = 'completed', finished_at = now() WHERE id = $1", ended)
    reconciler = ReconcilerRole(pool, stuck_after=timedelta(hours=1), sweep_page_size=1_000_000, interval=1)
    await reconciler.tick(fake_session()[0])
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM dispatch_queue WHERE job_id = $1", scheduled) == 1
        assert await connection.fetchval("SELECT count(*) FROM running_jobs WHERE job_id = $1", running) == 1
        assert await connection.fetchval("SELECT count(*) FROM retention_queue WHERE job_id = $1", ended) == 1


async def test_a_job_whose_products_all_ended_is_ended(pool: asyncpg.Pool, make_project: MakeProject) -> None:
    """The acknowledgement's process died between settling the last product and ending the job."""
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        [job_id] = (
            await create_jobs(connection, [NewJob(f"end-{project_id}", project_id, [("userId", "u")])], ["p"], None)
        ).values()
        await connection.execute(
            "WITH r AS (UPDATE jobs SET status = 'running' WHERE id = $1 RETURNING id)"
            " INSERT INTO running_jobs SELECT id, now() FROM r",
            job_id,
        )
        await connection.execute(
            "UPDATE product_status SET status = 'success', chunks_success = 1 WHERE job_id = $1", job_id
        )
    reconciler = ReconcilerRole(pool, stuck_after=timedelta(hours=1), sweep_page_size=100, interval=1)
    with structlog.testing.capture_logs() as logs:
        await reconciler.tick(fake_session()[0])
    assert await pool.fetchval("SELECT status FROM jobs WHERE id = $1", job_id) == "completed"
    assert any(entry["event"] == "jobs_ended_by_reconciler" for entry in logs)


async def test_jobs_without_progress_are_reported_with_the_reason(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        created = await create_jobs(
            connection,
            [NewJob(f"stuck-{project_id}-{i}", project_id, [("userId", f"u{i}")]) for i in range(2)],
            ["crm"],
            None,
        )
        due, waiting = created.values()
        await connection.execute("UPDATE dispatch_queue SET due_at = now() - interval '2 hours' WHERE job_id = $1", due)
        await connection.execute("DELETE FROM dispatch_queue WHERE job_id = $1", waiting)
        await connection.execute("UPDATE jobs SET status = 'running' WHERE id = $1", waiting)
        await connection.execute("INSERT INTO running_jobs VALUES ($1, now() - interval '2 hours')", waiting)
        task = uuid.uuid4()
        await connection.execute(
            "INSERT INTO task_chunks (job_id, product, chunk_no, task_id, seq_from, seq_to)"
            " VALUES ($1, 'crm', 0, $2, 0, 1)",
            waiting,
            task,
        )
        found = {job.job_id: job for job in await stuck_jobs(connection, timedelta(hours=1))}
    assert found[due].reason == "not_dispatched"
    assert (found[waiting].reason, found[waiting].products) == ("awaiting_products", ["crm"])
