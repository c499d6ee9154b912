"""Jobs: creating them (from the intake queue or the API) and cancelling them.

Creation is batched: one statement inserts every job of a batch, COPY writes their
identities, one more statement adds a `waiting` product status per product. The
request id makes creation idempotent: a request seen twice is one job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from schemas.status import ACTIVE_JOB_STATUSES, JobStatus
from schemas.wire import ITEM_FRAMING_BYTES, identity_bytes_bound
from worker.errors import NotFoundError, RefusedError
from worker.gc_pause import gc_paused


@dataclass(frozen=True)
class NewJob:
    request_id: str
    project_id: int
    identities: list[tuple[str, str]]  # (namespace, value)
    action: str = "delete_user_data"
    dataset_id: str = "ALL"
    start_at: datetime | None = None
    description: str = ""
    display_name: str = ""
    reference_id: str | None = None
    created_by: str | None = None


@dataclass(frozen=True)
class JobSizing:
    """How a job's identities are cut into chunks: at most `chunk_size` identities, and
    few enough that a chunk's encoded size stays within `task_max_bytes`."""

    chunk_size: int = 10_000
    task_max_bytes: int = 4 * 1024 * 1024

    def for_identities(self, identities: list[tuple[str, str]]) -> tuple[int, int]:
        """(chunk size, bound of one identity's encoded bytes) for a job."""
        per_identity = identity_bytes_bound(max((len(ns) + len(value) for ns, value in identities), default=0))
        fitting = max(1, (self.task_max_bytes - ITEM_FRAMING_BYTES) // per_identity)
        return min(self.chunk_size, fitting), per_identity


def chunk_count(identity_count: int, chunk_size: int) -> int:
    return -(-identity_count // chunk_size)


CREATE_JOBS = """
WITH created AS (
    INSERT INTO jobs (request_id, project_id, action, dataset_id, reference_id, description,
                      display_name, created_by, identity_count, chunk_size, start_at, identity_max_bytes)
    SELECT r, p, a, d, ref, descr, dn, cb, n, cs, s, mb
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::int[], $10::int[], $11::timestamptz[], $12::int[])
         AS t(r, p, a, d, ref, descr, dn, cb, n, cs, s, mb)
    ON CONFLICT (request_id) DO NOTHING
    RETURNING id, request_id, coalesce(start_at, created_at) AS due_at
), queued AS (
    INSERT INTO dispatch_queue (due_at, job_id) SELECT due_at, id FROM created
)
SELECT id, request_id FROM created
"""


async def create_jobs(
    connection: asyncpg.Connection,
    jobs: list[NewJob],
    products: list[str],
    notify_channel: str | None,
    sizing: JobSizing | None = None,
) -> dict[str, int]:
    """Insert the jobs that do not exist yet; returns {request_id: job_id} of those created.

    Runs in the caller's transaction if there is one, else in its own.
    """
    if not jobs:
        return {}
    sizing = sizing or JobSizing()
    sizes = [sizing.for_identities(job.identities) for job in jobs]
    async with connection.transaction():
        # New jobs enter the dispatch queue in the same statement.
        rows = await connection.fetch(
            CREATE_JOBS,
            [j.request_id for j in jobs],
            [j.project_id for j in jobs],
            [j.action for j in jobs],
            [j.dataset_id for j in jobs],
            [j.reference_id for j in jobs],
            [j.description for j in jobs],
            [j.display_name for j in jobs],
            [j.created_by for j in jobs],
            [len(j.identities) for j in jobs],
            [chunk_size for chunk_size, _ in sizes],
            [j.start_at for j in jobs],
            [per_identity for _, per_identity in sizes],
        )
        created = {row["request_id"]: row["id"] for row in rows}
        if not created:
            return created
        with gc_paused():  # one tuple per identity: up to 100,000 per job (see worker.gc_pause)
            identity_rows = [
                (created[job.request_id], seq, namespace, value)
                for job in jobs
                if job.request_id in created
                for seq, (namespace, value) in enumerate(job.identities)
            ]
        await connection.copy_records_to_table(
            "job_identities", records=identity_rows, columns=["job_id", "seq", "namespace", "value"]
        )
        if products:
            chunk_sizes = {job.request_id: size for job, (size, _) in zip(jobs, sizes, strict=True)}
            by_request = {job.request_id: job for job in jobs}
            await connection.execute(
                "INSERT INTO product_status (job_id, product, chunks_total)"
                " SELECT j, p, n FROM unnest($1::bigint[], $2::int[]) AS t(j, n) CROSS JOIN unnest($3::text[]) AS p",
                list(created.values()),
                [chunk_count(len(by_request[r].identities), chunk_sizes[r]) for r in created],
                products,
            )
        if notify_channel is not None:
            await connection.execute("SELECT pg_notify($1, '')", notify_channel)
    return created


class CancelRefusedError(RefusedError):
    """The job is in a state that cannot be cancelled; the message says which."""

    def __init__(self, job_id: int, status: str) -> None:
        super().__init__(f"job {job_id} is {status} and can no longer be cancelled")
        self.job_id = job_id
        self.status = status


class JobNotFoundError(NotFoundError):
    pass


async def cancel_job(connection: asyncpg.Connection, job_id: int, project_id: int | None = None) -> None:
    """Cancel a scheduled or running job and its product work that has not finished.

    `project_id`, when given, must match (the API scopes jobs by project). Raises
    JobNotFoundError or CancelRefusedError. Rows are locked in the order acknowledgements
    lock them (after the job: task_chunks, then product_status), so the two never deadlock.
    """
    async with connection.transaction():
        row = await connection.fetchrow("SELECT status, project_id FROM jobs WHERE id = $1 FOR UPDATE", job_id)
        if row is None or (project_id is not None and row["project_id"] != project_id):
            raise JobNotFoundError(f"job {job_id} not found")
        if row["status"] not in ACTIVE_JOB_STATUSES:
            raise CancelRefusedError(job_id, row["status"])
        await connection.execute(
            "UPDATE task_chunks SET status = 'cancelled', acked_at = now() WHERE job_id = $1 AND status = 'waiting'",
            job_id,
        )
        await connection.execute(
            "UPDATE product_status SET status = 'cancelled', created_at = now()"
            " WHERE job_id = $1 AND status IN ('waiting', 'running')",
            job_id,
        )
        await connection.execute(
            "WITH ended AS (UPDATE jobs SET status = $2, updated_at = now(), finished_at = now()"
            " WHERE id = $1 RETURNING id, finished_at),"
            " queued AS (INSERT INTO retention_queue (finished_at, job_id) SELECT finished_at, id FROM ended)"
            " DELETE FROM running_jobs WHERE job_id = $1",
            job_id,
            JobStatus.CANCELLED,
        )


JOB_TABLES = ("task_chunks", "product_status", "job_identities", "dispatch_queue", "retention_queue", "running_jobs")


async def delete_jobs(connection: asyncpg.Connection, job_ids: list[int]) -> None:
    """Remove jobs and every row that belongs to them."""
    async with connection.transaction():
        for table in JOB_TABLES:
            await connection.execute(f"DELETE FROM {table} WHERE job_id = ANY($1::bigint[])", job_ids)  # noqa: S608
        await connection.execute("DELETE FROM jobs WHERE id = ANY($1::bigint[])", job_ids)
