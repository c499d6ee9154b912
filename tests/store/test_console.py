"""The console's store reads: a person's jobs are found through the identity indexes,
never by reading every identity ever taken."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from tests.store.plans import explain, plan_nodes, rolled_back
from worker.store.console import JOBS_BY_IDENTITY
from worker.store.jobs import NewJob, create_jobs

JOBS = 5_000


async def test_finding_a_person_reads_job_identities_through_its_indexes(
    pool: asyncpg.Pool, make_project: Callable[..., Awaitable[tuple[int, str]]]
) -> None:
    """Before migration 0018 the planner had no way in but reading all of job_identities
    (tens of millions of rows at production scale); now it looks the value, or after
    retention its hash, up in an index. Rolled back: the rows do not stay."""
    project_id, _ = await make_project()
    jobs = [
        NewJob(request_id=f"find-{n}", project_id=project_id, identities=[("email", f"p{n}@x")]) for n in range(JOBS)
    ]
    async with rolled_back(pool) as connection:
        await explain_lookups(connection, project_id, jobs)


async def explain_lookups(connection: asyncpg.Connection, project_id: int, jobs: list[NewJob]) -> None:
    await create_jobs(connection, jobs, ["sessions"], None)
    await connection.execute("UPDATE job_identities SET value = NULL, value_hash = sha256(value::bytea)"
                             " WHERE job_id IN (SELECT id FROM jobs WHERE project_id = $1) AND value LIKE 'p1%'",
                             project_id)  # fmt: skip
    await connection.execute("ANALYZE job_identities, jobs")
    for value, digest, index in (
        ("p7@x", b"\x00", "job_identities_value_idx"),
        ("p1@x", b"\x01" * 32, "job_identities_value_hash_idx"),
    ):
        plan = await explain(connection, JOBS_BY_IDENTITY, [project_id], "email", value, digest, 100)
        assert index in {node.get("Index Name") for node in plan_nodes(plan)}, plan
