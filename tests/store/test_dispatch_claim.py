"""Claiming due jobs reads them by primary key, whatever the statistics say."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from tests.store.plans import explain, plan_nodes, rolled_back
from worker.store.dispatch import CLAIM_DUE_JOBS
from worker.store.jobs import NewJob, create_jobs

JOBS = 20_000


async def test_claiming_reads_the_taken_jobs_by_key_after_stats_that_saw_none_scheduled(
    pool: asyncpg.Pool, make_project: Callable[..., Awaitable[tuple[int, str]]]
) -> None:
    """Found in the bench: an ANALYZE taken at the end of a burst (every job completed)
    made the planner expect one scheduled job, and join a sequential scan of `jobs` on
    status = 'scheduled' against a rescan of the taken rows. With 17,000 jobs then
    scheduled, a dispatch round took 2-10 s and no job completed for 19 s at a time.
    Rolled back: the rows and the statistics do not stay."""
    project_id, _ = await make_project()
    jobs = [
        NewJob(request_id=f"claim-{n}", project_id=project_id, identities=[("userId", f"u{n}")]) for n in range(JOBS)
    ]
    async with rolled_back(pool) as connection:
        await create_jobs(connection, jobs, ["sessions"], None)
        await connection.execute("UPDATE jobs SET status = 'completed' WHERE project_id = $1", project_id)
        # Statistics from a moment with none scheduled; none yet for the dispatch queue
        # (as in the bench: a new database, the queue never analyzed).
        await connection.execute("ANALYZE jobs")
        await connection.execute("DELETE FROM pg_statistic WHERE starelid = 'dispatch_queue'::regclass")
        await connection.execute("UPDATE jobs SET status = 'scheduled' WHERE project_id = $1", project_id)
        plan = await explain(connection, CLAIM_DUE_JOBS, 5_000, 500_000)
    # Both reads of jobs (each due job's size, then the taken jobs, locked) go by key.
    reads = [node for node in plan_nodes(plan) if node.get("Relation Name") == "jobs"]
    assert len(reads) == 2, plan
    assert {node["Node Type"] for node in reads} <= {"Index Scan", "Bitmap Heap Scan"}, plan
