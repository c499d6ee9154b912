"""Acknowledgements at scale and under concurrency: a batch covering tens of thousands of
jobs, and cancels racing acknowledgements for the same jobs."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from tests.store.dispatched import Tasks, dispatched_jobs
from worker.db import retry_contention
from worker.errors import RefusedError
from worker.store.acks import ChunkResult, apply_acks
from worker.store.jobs import NewJob, cancel_job, create_jobs

MakeProject = Callable[..., Awaitable[tuple[int, str]]]
PRODUCTS = ["p1", "p2", "p3"]


async def running_jobs_with_tasks(pool: asyncpg.Pool, project_id: int, count: int, tag: str) -> Tasks:
    """`count` single-identity jobs, dispatched."""
    return await dispatched_jobs(
        pool, [NewJob(f"{tag}-{i}", project_id, [("userId", f"{tag}-{i}")]) for i in range(count)], PRODUCTS
    )


def jobs_of(tasks: Tasks) -> list[int]:
    return sorted({job_id for job_id, _ in tasks})


def results(tasks: Tasks, product: str, job_ids: list[int]) -> list[ChunkResult]:
    return [ChunkResult(tasks[(job_id, product)], job_id, product, "success", None) for job_id in job_ids]


@pytest.mark.timeout(300)  # 25,000 jobs made, dispatched and settled, with their event triggers
async def test_one_batch_finishing_25000_jobs_needs_no_lock_per_job(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    """Before: one advisory lock per job in the batch; with max_locks_per_transaction at its
    default a batch over ~20,000 jobs failed with 53200 "out of shared memory", forever."""
    project_id, _ = await make_project()
    tasks = await running_jobs_with_tasks(pool, project_id, 25_000, f"big-{project_id}")
    job_ids = jobs_of(tasks)
    batch = [result for product in PRODUCTS for result in results(tasks, product, job_ids)]
    async with pool.acquire() as connection:
        outcome = await apply_acks(connection, batch)
        again = await apply_acks(connection, batch[:1000])  # redelivered: changes nothing
    assert (outcome.settled, outcome.stale, len(outcome.completed)) == (75_000, 0, 25_000)
    assert (again.settled, again.stale, again.completed) == (0, 1000, [])
    assert await pool.fetchval("SELECT count(*) FROM running_jobs WHERE job_id = ANY($1)", job_ids) == 0
    assert await pool.fetchval("SELECT count(*) FROM retention_queue WHERE job_id = ANY($1)", job_ids) == 25_000


async def test_a_job_ends_when_its_last_products_are_settled_by_concurrent_batches(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    project_id, _ = await make_project()
    for round_ in range(20):
        tasks = await running_jobs_with_tasks(pool, project_id, 50, f"race-{project_id}-{round_}")
        job_ids = jobs_of(tasks)

        async def settle(product: str, tasks: Tasks = tasks, job_ids: list[int] = job_ids) -> None:
            async with pool.acquire() as connection:
                await apply_acks(connection, results(tasks, product, job_ids))

        await asyncio.gather(*(settle(product) for product in PRODUCTS))
        statuses = await pool.fetch("SELECT DISTINCT status FROM jobs WHERE id = ANY($1)", job_ids)
        assert [row["status"] for row in statuses] == ["completed"], f"round {round_}"


async def test_cancels_racing_acknowledgements_never_deadlock(pool: asyncpg.Pool, make_project: MakeProject) -> None:
    """Before: a cancel locked product_status then task_chunks, acknowledgements the other
    way round; the cancel call could end in a deadlock (and the API answered 500)."""
    project_id, _ = await make_project()
    tasks = await running_jobs_with_tasks(pool, project_id, 300, f"cancel-{project_id}")
    job_ids = jobs_of(tasks)
    rng = random.Random(7)

    async def acknowledge(product: str) -> None:
        order = job_ids[:]
        rng.shuffle(order)
        for start in range(0, len(order), 30):
            async with pool.acquire() as connection:
                await apply_acks(connection, results(tasks, product, order[start : start + 30]))

    async def cancel(ids: list[int]) -> None:
        for job_id in ids:
            async with pool.acquire() as connection:
                with contextlib.suppress(RefusedError):  # ended first: fine
                    await cancel_job(connection, job_id, project_id)

    to_cancel = rng.sample(job_ids, 150)
    await asyncio.gather(*(acknowledge(p) for p in PRODUCTS), cancel(to_cancel[:75]), cancel(to_cancel[75:]))
    rows = await pool.fetch("SELECT status, count(*) AS n FROM jobs WHERE id = ANY($1) GROUP BY status", job_ids)
    counts = {row["status"]: row["n"] for row in rows}
    assert set(counts) <= {"completed", "cancelled"}
    assert sum(counts.values()) == 300
    # Each job ended once: a cancelled job has no product left waiting, a completed one has all three.
    mixed = await pool.fetchval(
        "SELECT count(*) FROM jobs j WHERE j.id = ANY($1) AND j.status = 'completed'"
        " AND EXISTS (SELECT 1 FROM product_status ps WHERE ps.job_id = j.id AND ps.status <> 'success')",
        job_ids,
    )
    assert mixed == 0


async def test_cancels_racing_out_of_order_acknowledgements_always_end(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    """Multi-chunk jobs acknowledged highest chunk first while they are cancelled. A
    deadlock may happen (found in review); it must never reach the caller: a cancel is
    retried, a batch is retried in place (as the consumer does), every job ends once."""
    project_id, _ = await make_project()
    chunks = 6
    async with pool.acquire() as connection:
        created = await create_jobs(
            connection,
            [
                NewJob(f"multi-{project_id}-{i}", project_id, [("userId", f"u{i}-{c}") for c in range(chunks)])
                for i in range(60)
            ],
            ["p1"],
            None,
        )
        job_ids = sorted(created.values())
        await connection.execute("UPDATE product_status SET chunks_total = $2 WHERE job_id = ANY($1)", job_ids, chunks)
        tasks = {(job_id, c): uuid.uuid4() for job_id in job_ids for c in range(chunks)}
        await connection.copy_records_to_table(
            "task_chunks",
            records=[(job_id, "p1", c, task, c, c + 1) for (job_id, c), task in tasks.items()],
            columns=["job_id", "product", "chunk_no", "task_id", "seq_from", "seq_to"],
        )
        await connection.execute("UPDATE jobs SET status = 'running' WHERE id = ANY($1)", job_ids)

    async def acknowledge(ids: list[int]) -> None:
        # Highest chunk first: the order handlers may well finish in.
        batch = [ChunkResult(tasks[(j, c)], j, "p1", "success", None) for j in ids for c in reversed(range(chunks))]
        async with pool.acquire() as connection:
            await retry_contention(lambda: apply_acks(connection, batch))

    async def cancel(ids: list[int]) -> None:
        for job_id in ids:
            async with pool.acquire() as connection:
                with contextlib.suppress(RefusedError):  # ended first: fine
                    await cancel_job(connection, job_id, project_id)

    halves = [job_ids[i::2] for i in range(2)]
    await asyncio.gather(
        *(acknowledge(job_ids[i : i + 10]) for i in range(0, 60, 10)), cancel(halves[0]), cancel(halves[1])
    )
    ended = await pool.fetchval(
        "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status IN ('completed', 'cancelled')", job_ids
    )
    assert ended == 60
