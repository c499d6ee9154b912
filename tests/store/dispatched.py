"""Jobs put in the state dispatch leaves them in, without running dispatch: the store
tests that start from running jobs (acknowledgements, the audit trail) share it."""

from __future__ import annotations

import uuid

import asyncpg

from worker.store.jobs import NewJob, create_jobs

Tasks = dict[tuple[int, str], uuid.UUID]  # (job, product) → the task that carries its chunk


async def dispatched_jobs(pool: asyncpg.Pool, jobs: list[NewJob], products: list[str]) -> Tasks:
    """The jobs created and dispatched the way dispatch does it: a task per product, one
    chunk each, the job running and off the dispatch queue."""
    async with pool.acquire() as connection:
        created = await create_jobs(connection, jobs, products, None)
        tasks = {(job_id, product): uuid.uuid4() for job_id in created.values() for product in products}
        await connection.copy_records_to_table(
            "task_chunks",
            records=[(job_id, product, 0, task, 0, 1) for (job_id, product), task in tasks.items()],
            columns=["job_id", "product", "chunk_no", "task_id", "seq_from", "seq_to"],
        )
        await connection.execute(
            "WITH r AS (UPDATE jobs SET status = 'running', dispatched_at = now() WHERE id = ANY($1) RETURNING id)"
            " INSERT INTO running_jobs (job_id, since) SELECT id, now() FROM r",
            list(created.values()),
        )
        await connection.execute("DELETE FROM dispatch_queue WHERE job_id = ANY($1)", list(created.values()))
    return tasks
