"""The audit trail (migrations/0011): every step of a job is chained by the triggers,
whichever code path made it; entries cannot be changed, and a change made past the
refusal (as a superuser) is found by verify_chain."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

import asyncpg
import orjson
import pytest

from tests.store.dispatched import Tasks, dispatched_jobs
from tests.support import end_job
from worker.store.acks import ChunkResult, apply_acks
from worker.store.audit import GENESIS, job_audit, verify_chain
from worker.store.jobs import NewJob, cancel_job, create_jobs
from worker.store.retention import hash_expired_identities

MakeProject = Callable[..., Awaitable[tuple[int, str]]]
PRODUCTS = ["p1", "p2", "p3"]
SECRET = "audit.person@example.com"


async def running_jobs(
    pool: asyncpg.Pool, project_id: int, count: int, tag: str, created_by: str | None = None
) -> Tasks:
    """`count` jobs of one identity each, dispatched."""
    jobs = [NewJob(f"{tag}-{i}", project_id, [("email", f"{i}.{SECRET}")], created_by=created_by) for i in range(count)]
    return await dispatched_jobs(pool, jobs, PRODUCTS)


def acks(tasks: Tasks, product: str, status: str = "success", error: str | None = None) -> list[ChunkResult]:
    return [ChunkResult(task, job_id, p, status, error) for (job_id, p), task in tasks.items() if p == product]


async def test_a_job_s_life_is_chained_without_identity_values(pool: asyncpg.Pool, make_project: MakeProject) -> None:
    project_id, _ = await make_project()
    tasks = await running_jobs(pool, project_id, 1, f"life-{project_id}", created_by="dwk_abcdefgh")
    [job_id] = {job_id for job_id, _ in tasks}
    async with pool.acquire() as connection:
        # Two products in one batch (one entry listing both), the third fails quoting the identity.
        p1 = [replace(result, deleted=7, not_found=0) for result in acks(tasks, "p1")]
        await apply_acks(connection, p1 + acks(tasks, "p2"))
        await apply_acks(connection, acks(tasks, "p3", "failed", f"no such user {SECRET}"))
        await end_job(connection, job_id, "failed", ago=timedelta(days=30))
        await hash_expired_identities(connection, b"k" * 32, timedelta(days=7))
        entries, head = await job_audit(connection, job_id)

    kinds = [entry.kind for entry in entries]
    assert kinds == ["job.received", "job.running", "products", "products", "job.failed", "job.identities_hashed"]
    details = [orjson.loads(entry.detail) for entry in entries]
    assert details[0]["via"] == "api"
    assert details[0]["createdBy"] == "dwk_abcdefgh"
    assert details[0]["identityCount"] == 1
    assert [(p["product"], p["status"]) for p in details[2]["products"]] == [("p1", "success"), ("p2", "success")]
    # What each product said it did; null where it said nothing.
    assert [(p["deleted"], p["notFound"]) for p in details[2]["products"]] == [(7, 0), (None, None)]
    assert (
        details[3]["products"][0] | {"chunksFailed": 1, "status": "failed", "from": "waiting"}
        == details[3]["products"][0]
    )
    assert all(SECRET not in entry.detail for entry in entries)  # not even the product's error text
    assert entries[0].prev_hash == GENESIS
    assert [entry.seq for entry in entries] == list(range(1, 7))
    assert head is not None
    assert head.hash == entries[-1].hash
    check = verify_chain(entries, head)
    assert check.intact, check.problems


async def test_a_cancel_names_who_cancelled(pool: asyncpg.Pool, make_project: MakeProject) -> None:
    project_id, _ = await make_project()
    tasks = await running_jobs(pool, project_id, 1, f"cancel-{project_id}")
    [job_id] = {job_id for job_id, _ in tasks}
    async with pool.acquire() as connection:
        await cancel_job(connection, job_id, project_id, actor="dwk_canceler")
        entries, head = await job_audit(connection, job_id)
    assert [entry.kind for entry in entries][-2:] == ["products", "job.cancelled"]
    cancelled = orjson.loads(entries[-1].detail)
    assert (cancelled["by"], cancelled["from"]) == ("dwk_canceler", "running")
    assert {p["status"] for p in orjson.loads(entries[-2].detail)["products"]} == {"cancelled"}
    assert verify_chain(entries, head).intact


async def test_concurrent_batches_of_one_job_never_fork_its_chain(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    """Three batches settle the three products of the same jobs at once, each in its own
    transaction: every job's entries still form one chain (one received, one running,
    three product entries, one completed)."""
    project_id, _ = await make_project()
    tasks = await running_jobs(pool, project_id, 200, f"race-{project_id}")
    job_ids = sorted({job_id for job_id, _ in tasks})

    async def settle(product: str) -> None:
        batch = acks(tasks, product)
        async with pool.acquire() as connection:
            for start in range(0, len(batch), 20):
                await apply_acks(connection, batch[start : start + 20])

    await asyncio.gather(*(settle(product) for product in PRODUCTS))
    async with pool.acquire() as connection:
        for job_id in job_ids:
            entries, head = await job_audit(connection, job_id)
            check = verify_chain(entries, head)
            assert check.intact, (job_id, check.problems)
            assert [entry.kind for entry in entries].count("products") == 3
            assert entries[-1].kind == "job.completed"


async def tamper(connection: asyncpg.Connection, sql: str, *args: object) -> None:
    """Run `sql` past the append-only trigger, as only a superuser can (no table lock)."""
    async with connection.transaction():
        await connection.execute("SET LOCAL session_replication_role = replica")
        await connection.execute(sql, *args)


async def test_an_edited_or_removed_entry_is_found(pool: asyncpg.Pool, make_project: MakeProject) -> None:
    project_id, _ = await make_project()
    tasks = await running_jobs(pool, project_id, 3, f"tamper-{project_id}")
    edited, removed, truncated = sorted({job_id for job_id, _ in tasks})
    async with pool.acquire() as connection:
        for product in PRODUCTS:
            await apply_acks(connection, acks(tasks, product))
        await tamper(
            connection,
            "UPDATE audit_entries SET detail = replace(detail::text, 'success', 'failed')::json"
            " WHERE job_id = $1 AND seq = 3",
            edited,
        )
        await tamper(connection, "DELETE FROM audit_entries WHERE job_id = $1 AND seq = 2", removed)
        await tamper(
            connection,
            "DELETE FROM audit_entries WHERE job_id = $1"
            " AND seq = (SELECT max(seq) FROM audit_entries WHERE job_id = $1)",
            truncated,
        )
        problems = {
            job_id: verify_chain(*(await job_audit(connection, job_id))).problems for job_id in tasks_jobs(tasks)
        }
    assert problems[edited] == ["entry 3: its content does not match its hash (changed)"]
    assert problems[removed] == [
        "entry 3: expected entry 2 here (entries missing)",
        "entry 3: does not follow the entry before it (prev_hash differs)",
    ]
    assert problems[truncated] == ["the head is entry 6 but the last entry is 5 (entries removed or changed)"]


def tasks_jobs(tasks: Tasks) -> list[int]:
    return sorted({job_id for job_id, _ in tasks})


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entries SET kind = 'x' WHERE job_id = $1",
        "DELETE FROM audit_entries WHERE job_id = $1",
        "TRUNCATE audit_entries",
    ],
)
async def test_entries_cannot_be_changed_or_removed(
    pool: asyncpg.Pool, make_project: MakeProject, statement: str
) -> None:
    project_id, _ = await make_project()
    async with pool.acquire() as connection:
        created = await create_jobs(connection, [NewJob(f"ro-{project_id}", project_id, [("userId", "u")])], [], None)
        job_id = next(iter(created.values()))
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match="append-only"):
            await connection.execute(statement, *([job_id] if "$1" in statement else []))
        entries, head = await job_audit(connection, job_id)
    assert [entry.kind for entry in entries] == ["job.received"]
    assert verify_chain(entries, head).intact
