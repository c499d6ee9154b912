"""Due dates: from the regulation or the request, carried by the job, told once at risk
and once overdue, counted per project, listed by the CLI."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import REGISTRY

from tests.support import WorkerHandle, job_ids_for, publish, request
from worker.roles.base import Session
from worker.roles.maintenance import MaintenanceRole
from worker.settings import Settings
from worker.store.jobs import NewJob, cancel_job, create_jobs

MakeSettings = Callable[..., Settings]
MakeProject = Callable[..., Awaitable[tuple[int, str]]]
PARKED = 4_102_444_800_000  # startAt in 2100: the jobs stay scheduled, nothing dispatches them


async def _due_events(pool: asyncpg.Pool, job_ids: list[int]) -> list[tuple[int, str]]:
    rows = await pool.fetch(
        "SELECT e.job_id, e.type FROM event_outbox, unnest(events) e"
        " WHERE e.job_id = ANY($1::bigint[]) AND e.type IN ('job.at_risk', 'job.overdue')"
        " ORDER BY 1, 2",
        job_ids,
    )
    return [(row["job_id"], row["type"]) for row in rows]


def _gauge(name: str, project: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"project": project})


async def test_regulation_sets_the_due_date_and_the_request_can_override_it(
    pool: asyncpg.Pool,
    make_settings: MakeSettings,
    make_project: MakeProject,
    run_worker: Callable[..., Awaitable[WorkerHandle]],
) -> None:
    settings = make_settings(regulation_deadlines={"lgpd": timedelta(days=10)})
    await run_worker(settings)
    _, key = await make_project()
    explicit = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    requests = [
        request(key, "a", regulation="gdpr", start_at=PARKED),
        request(key, "b", regulation="lgpd", start_at=PARKED),
        request(key, "c", regulation="ccpa", due_at=int(explicit.timestamp() * 1000), start_at=PARKED),
        request(key, "d", start_at=PARKED),
    ]
    await publish(settings, requests)
    job_ids = await job_ids_for(pool, [r.request_id for r in requests])
    rows = {r["id"]: r for r in await pool.fetch("SELECT * FROM jobs WHERE id = ANY($1)", job_ids)}
    gdpr, lgpd, ccpa, none = (rows[job_id] for job_id in job_ids)
    assert gdpr["regulation"] == "gdpr"
    assert abs(gdpr["due_at"] - gdpr["created_at"] - timedelta(days=30)) < timedelta(seconds=5)
    assert abs(lgpd["due_at"] - lgpd["created_at"] - timedelta(days=10)) < timedelta(seconds=5)  # the setting
    assert (ccpa["regulation"], ccpa["due_at"]) == ("ccpa", explicit)
    assert (none["regulation"], none["due_at"]) == (None, None)
    watched = {r["job_id"] for r in await pool.fetch("SELECT job_id FROM due_watch WHERE job_id = ANY($1)", job_ids)}
    assert watched == set(job_ids[:3])


async def test_at_risk_then_overdue_once_each_and_ended_jobs_are_not_watched(
    pool: asyncpg.Pool, make_project: MakeProject
) -> None:
    project_id, key = await make_project()
    now = datetime.now(UTC)
    due = {"soon": now + timedelta(days=2), "late": now - timedelta(hours=1), "far": now + timedelta(days=20)}
    async with pool.acquire() as connection:
        created = await create_jobs(
            connection,
            [
                NewJob(
                    f"due-{name}-{uuid.uuid4()}",
                    project_id,
                    [("userId", name)],
                    due_at=at,
                    start_at=now + timedelta(days=99),
                )
                for name, at in due.items()
            ],
            ["p"],
            None,
        )
    soon, late, far = created.values()
    role = MaintenanceRole(
        pool, hash_key=b"k" * 32, retention=timedelta(days=7), step=100, interval=60, at_risk_margin=timedelta(days=5)
    )
    session = Session(None, None, None, None)  # type: ignore[arg-type] # the round uses none of it
    await role.tick(session)
    assert await _due_events(pool, [soon, late, far]) == [(soon, "job.at_risk"), (late, "job.overdue")]
    assert _gauge("deletion_jobs_at_risk", key) == 1
    assert _gauge("deletion_jobs_overdue", key) == 1

    await role.tick(session)  # nothing new: told once
    assert len(await _due_events(pool, [soon, late, far])) == 2

    # Time passes for `soon` (its due date moves into the past): now it is overdue too.
    await pool.execute("UPDATE due_watch SET due_at = now() - interval '1 minute' WHERE job_id = $1", soon)
    await role.tick(session)
    assert await _due_events(pool, [soon]) == [(soon, "job.at_risk"), (soon, "job.overdue")]
    assert _gauge("deletion_jobs_overdue", key) == 2

    async with pool.acquire() as connection:
        await cancel_job(connection, late)
        await cancel_job(connection, soon)
    assert await pool.fetchval("SELECT array_agg(job_id) FROM due_watch WHERE job_id = ANY($1)", [soon, late, far]) == [
        far
    ]
    await role.tick(session)
    assert _gauge("deletion_jobs_overdue", key) == 0  # a project with none left reads 0, not its last count
