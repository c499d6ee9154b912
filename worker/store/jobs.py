"""Jobs: creating them (from the intake queue or the API) and cancelling them.

Creation is batched: one statement inserts every job of a batch, COPY writes their
identities, one more statement adds a `waiting` product status per product. The
request id makes creation idempotent: a request seen twice is one job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from worker.gc_pause import gc_paused

ACTIVE_JOB_STATUSES = ("scheduled", "running")
TERMINAL_JOB_STATUSES = ("completed", "failed", "cancelled")


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


DEFAULT_CHUNK_SIZE = 10_000


def chunk_count(identity_count: int, chunk_size: int) -> int:
    return -(-identity_count // chunk_size)


def due_channel(prefix: str) -> str:
    """The LISTEN/NOTIFY channel on which new due work wakes the dispatcher."""
    return f"{prefix}.due"


async def create_jobs(
    connection: asyncpg.Connection,
    jobs: list[NewJob],
    products: list[str],
    notify_channel: str | None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, int]:
    """Insert the jobs that do not exist yet; returns {request_id: job_id} of those created.

    Runs in the caller's transaction if there is one, else in its own.
    """
    if not jobs:
        return {}
    async with connection.transaction():
        # New jobs enter the dispatch queue in the same statement.
        rows = await connection.fetch(
            """
            WITH created AS (
                INSERT INTO jobs (request_id, project_id, action, dataset_id, reference_id, description,
                                  display_name, created_by, identity_count, chunk_size, start_at)
                SELECT r, p, a, d, ref, descr, dn, cb, n, $10, s
                FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                            $7::text[], $8::text[], $9::int[], $11::timestamptz[])
                     AS t(r, p, a, d, ref, descr, dn, cb, n, s)
                ON CONFLICT (request_id) DO NOTHING
                RETURNING id, request_id, coalesce(start_at, created_at) AS due_at
            ), queued AS (
                INSERT INTO dispatch_queue (due_at, job_id) SELECT due_at, id FROM created
            )
            SELECT id, request_id FROM created
            """,
            [j.request_id for j in jobs],
            [j.project_id for j in jobs],
            [j.action for j in jobs],
            [j.dataset_id for j in jobs],
            [j.reference_id for j in jobs],
            [j.description for j in jobs],
            [j.display_name for j in jobs],
            [j.created_by for j in jobs],
            [len(j.identities) for j in jobs],
            chunk_size,
            [j.start_at for j in jobs],
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
            by_request = {job.request_id: job for job in jobs}
            await connection.execute(
                "INSERT INTO product_status (job_id, product, chunks_total)"
                " SELECT j, p, n FROM unnest($1::bigint[], $2::int[]) AS t(j, n) CROSS JOIN unnest($3::text[]) AS p",
                list(created.values()),
                [chunk_count(len(by_request[r].identities), chunk_size) for r in created],
                products,
            )
        if notify_channel is not None:
            await connection.execute("SELECT pg_notify($1, '')", notify_channel)
    return created


class CancelRefusedError(Exception):
    """The job is in a state that cannot be cancelled; the message says which."""

    def __init__(self, job_id: int, status: str) -> None:
        super().__init__(f"job {job_id} is {status} and can no longer be cancelled")
        self.job_id = job_id
        self.status = status


class JobNotFoundError(LookupError):
    pass


async def cancel_job(connection: asyncpg.Connection, job_id: int, project_id: int | None = None) -> None:
    """Cancel a scheduled or running job and its product work that has not finished.

    `project_id`, when given, must match (the API scopes jobs by project). Raises
    JobNotFoundError or CancelRefusedError.
    """
    async with connection.transaction():
        row = await connection.fetchrow("SELECT status, project_id FROM jobs WHERE id = $1 FOR UPDATE", job_id)
        if row is None or (project_id is not None and row["project_id"] != project_id):
            raise JobNotFoundError(job_id)
        if row["status"] not in ACTIVE_JOB_STATUSES:
            raise CancelRefusedError(job_id, row["status"])
        await connection.execute(
            "WITH ended AS (UPDATE jobs SET status = 'cancelled', updated_at = now(), finished_at = now()"
            " WHERE id = $1 RETURNING id, finished_at)"
            " INSERT INTO retention_queue (finished_at, job_id) SELECT finished_at, id FROM ended",
            job_id,
        )
        await connection.execute(
            "UPDATE product_status SET status = 'cancelled', created_at = now()"
            " WHERE job_id = $1 AND status IN ('waiting', 'running')",
            job_id,
        )
        await connection.execute(
            "UPDATE task_chunks SET status = 'cancelled', acked_at = now() WHERE job_id = $1 AND status = 'waiting'",
            job_id,
        )


async def delete_jobs(connection: asyncpg.Connection, job_ids: list[int]) -> None:
    """Remove jobs and every row that belongs to them."""
    async with connection.transaction():
        for table in ("task_chunks", "product_status", "job_identities", "dispatch_queue", "retention_queue"):
            await connection.execute(f"DELETE FROM {table} WHERE job_id = ANY($1::bigint[])", job_ids)  # noqa: S608
        await connection.execute("DELETE FROM jobs WHERE id = ANY($1::bigint[])", job_ids)


JOB_COLUMNS = """
    j.id, j.request_id, j.project_id, j.workorder_id, j.bundle_id, j.action, j.dataset_id,
    j.reference_id, j.description, j.display_name, j.created_by, j.status, j.errors,
    j.identity_count, j.created_at, j.updated_at, j.start_at, j.dispatched_at, j.finished_at
"""


async def get_job(connection: asyncpg.Connection, job_id: int) -> dict[str, Any] | None:
    row = await connection.fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = $1", job_id)  # noqa: S608
    return dict(row) if row is not None else None


async def get_product_status(connection: asyncpg.Connection, job_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    rows = await connection.fetch(
        "SELECT job_id, product, status, chunks_total, chunks_success, chunks_failed, error, created_at"
        " FROM product_status WHERE job_id = ANY($1::bigint[]) ORDER BY job_id, product",
        job_ids,
    )
    result: dict[int, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
    for row in rows:
        result[row["job_id"]].append(dict(row))
    return result
