"""Jobs: creating them (from the intake queue or the API) and cancelling them.

Creation is batched: one statement inserts every job of a batch, COPY writes their
identities, one more statement adds a `waiting` product status per product. The
request id makes creation idempotent within its project: a request seen twice is one
job; the same request id in another project is another request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from schemas.status import ACTIVE_JOB_STATUSES, JobStatus
from schemas.wire import ITEM_FRAMING_BYTES, identity_bytes_bound
from worker.db import retry_contention
from worker.errors import NotFoundError, RefusedError, TransientError
from worker.gc_pause import gc_paused
from worker.store.overview_summary import unsettle


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
    regulation: str | None = None
    due_at: datetime | None = None
    callback_urls: tuple[str, ...] = ()
    dry_run: bool = False  # count what would be deleted; delete nothing
    trace_parent: str | None = None  # W3C traceparent of what created it (worker.tracing), when tracing is on

    @property
    def key(self) -> tuple[int, str]:
        """What makes a request the same request: its project and its id."""
        return (self.project_id, self.request_id)


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
                      display_name, created_by, identity_count, chunk_size, start_at, identity_max_bytes,
                      regulation, due_at, callback_urls, dry_run)
    SELECT r, p, a, d, ref, descr, dn, cb, n, cs, s, mb, reg, due, string_to_array(nullif(urls, ''), E'\n'),
           nullif(dry, false)
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::int[], $10::int[], $11::timestamptz[], $12::int[],
                $13::text[], $14::timestamptz[], $15::text[], $16::bool[])
         AS t(r, p, a, d, ref, descr, dn, cb, n, cs, s, mb, reg, due, urls, dry)
    ON CONFLICT (project_id, request_id) DO NOTHING
    RETURNING id, project_id, request_id, coalesce(start_at, created_at) AS due_at
), queued AS (
    INSERT INTO dispatch_queue (due_at, job_id) SELECT due_at, id FROM created
)
SELECT id, project_id, request_id FROM created
"""

# The same with the trace context of each job (migrations/0016), used only when one has
# some: with tracing off the statement, and its cost, stay as they were.
CREATE_JOBS_TRACED = (
    CREATE_JOBS.replace("callback_urls, dry_run)", "callback_urls, dry_run, trace_parent)")
    .replace("nullif(dry, false)\n", "nullif(dry, false), tp\n")
    .replace("$16::bool[])", "$16::bool[], $17::text[])")
    .replace("urls, dry)", "urls, dry, tp)")
)

# The uniqueness of request ids across all projects, which the previous release relied
# on; dropped by migrations/post/0007 once it no longer runs.
GLOBAL_REQUEST_ID_CONSTRAINT = "jobs_request_id_key"


class RequestIdCollisionError(TransientError):
    """Until the post-deployment migrations have run, a request id may not be reused by
    another project: the request waits in the retry tiers (it is not dropped)."""


async def create_jobs(
    connection: asyncpg.Connection,
    jobs: list[NewJob],
    products: list[str],
    notify_channel: str | None,
    sizing: JobSizing | None = None,
) -> dict[tuple[int, str], int]:
    """Insert the jobs that do not exist yet in their project; returns {job.key: job_id}
    of those created. Runs in the caller's transaction if there is one, else in its own.
    """
    if not jobs:
        return {}
    sizing = sizing or JobSizing()
    sizes = [sizing.for_identities(job.identities) for job in jobs]
    async with connection.transaction():
        # New jobs enter the dispatch queue in the same statement.
        rows = await _insert_jobs(connection, jobs, sizes)
        created = {(row["project_id"], row["request_id"]): row["id"] for row in rows}
        if not created:
            return created
        with gc_paused():  # one tuple per identity: up to 100,000 per job (see worker.gc_pause)
            identity_rows = [
                (created[job.key], seq, namespace, value)
                for job in jobs
                if job.key in created
                for seq, (namespace, value) in enumerate(job.identities)
            ]
        await connection.copy_records_to_table(
            "job_identities", records=identity_rows, columns=["job_id", "seq", "namespace", "value"]
        )
        if products:
            chunk_sizes = {job.key: size for job, (size, _) in zip(jobs, sizes, strict=True)}
            by_key = {job.key: job for job in jobs}
            await connection.execute(
                "INSERT INTO product_status (job_id, product, chunks_total)"
                " SELECT j, p, n FROM unnest($1::bigint[], $2::int[]) AS t(j, n) CROSS JOIN unnest($3::text[]) AS p",
                list(created.values()),
                [chunk_count(len(by_key[k].identities), chunk_sizes[k]) for k in created],
                products,
            )
        if notify_channel is not None:
            await connection.execute("SELECT pg_notify($1, '')", notify_channel)
    return created


async def trace_parents(connection: asyncpg.Connection, job_ids: list[int]) -> list[str]:
    """The trace contexts kept with these jobs (only those created while tracing was on)."""
    rows = await connection.fetch(
        "SELECT trace_parent FROM jobs WHERE id = ANY($1::bigint[]) AND trace_parent IS NOT NULL", job_ids
    )
    return [row["trace_parent"] for row in rows]


async def existing_job_ids(connection: asyncpg.Connection, keys: list[tuple[int, str]]) -> list[int]:
    """The jobs these (project, request id) pairs already are."""
    rows = await connection.fetch(
        "SELECT j.id FROM jobs j JOIN unnest($1::bigint[], $2::text[]) AS k(project_id, request_id)"
        " ON j.project_id = k.project_id AND j.request_id = k.request_id ORDER BY j.id",
        [project_id for project_id, _ in keys],
        [request_id for _, request_id in keys],
    )
    return [row["id"] for row in rows]


async def _insert_jobs(
    connection: asyncpg.Connection, jobs: list[NewJob], sizes: list[tuple[int, int]]
) -> list[asyncpg.Record]:
    traced = [j.trace_parent for j in jobs] if any(j.trace_parent for j in jobs) else None
    try:
        rows: list[asyncpg.Record] = await connection.fetch(
            CREATE_JOBS if traced is None else CREATE_JOBS_TRACED,
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
            [j.regulation for j in jobs],
            [j.due_at for j in jobs],
            # One text per job: URLs hold no whitespace (schemas.messages.CallbackUrl).
            ["\n".join(j.callback_urls) for j in jobs],
            [j.dry_run for j in jobs],
            *([] if traced is None else [traced]),
        )
    except asyncpg.exceptions.UniqueViolationError as error:
        if getattr(error, "constraint_name", None) == GLOBAL_REQUEST_ID_CONSTRAINT:
            raise RequestIdCollisionError(
                "requestId is in use by another project; it can be stored once `deletion-worker migrate`"
                " has applied the post-deployment migrations"
            ) from error
        raise
    return rows


class CancelRefusedError(RefusedError):
    """The job is in a state that cannot be cancelled; the message says which."""

    def __init__(self, job_id: int, status: str) -> None:
        super().__init__(f"job {job_id} is {status} and can no longer be cancelled")
        self.job_id = job_id
        self.status = status


class JobNotFoundError(NotFoundError):
    pass


async def cancel_job(
    connection: asyncpg.Connection, job_id: int, project_id: int | None = None, actor: str | None = None
) -> None:
    """Cancel a scheduled or running job and its product work that has not finished.

    `project_id`, when given, must match (the API scopes jobs by project). `actor` (an
    API key prefix, "cli") is who cancelled it, for the audit trail. Raises
    JobNotFoundError or CancelRefusedError. Rows are locked in the order acknowledgements
    lock them (after the job: task_chunks, then product_status), so the two never deadlock.
    """
    await retry_contention(lambda: _cancel(connection, job_id, project_id, actor))


async def _cancel(connection: asyncpg.Connection, job_id: int, project_id: int | None, actor: str | None) -> None:
    async with connection.transaction():
        if actor is not None:
            # Read by the audit triggers (migrations/0011): the entries of this cancel name it.
            await connection.execute("SELECT set_config('deletion.actor', $1, true)", actor)
        row = await connection.fetchrow("SELECT status, project_id FROM jobs WHERE id = $1 FOR UPDATE", job_id)
        if row is None or (project_id is not None and row["project_id"] != project_id):
            raise JobNotFoundError(f"job {job_id} not found")
        if row["status"] not in ACTIVE_JOB_STATUSES:
            raise CancelRefusedError(job_id, row["status"])
        await connection.execute(
            "WITH locked AS (SELECT product, chunk_no FROM task_chunks WHERE job_id = $1 AND status = 'waiting'"
            " ORDER BY product, chunk_no FOR UPDATE)"
            " UPDATE task_chunks c SET status = 'cancelled', acked_at = now() FROM locked l"
            " WHERE c.job_id = $1 AND c.product = l.product AND c.chunk_no = l.chunk_no AND c.status = 'waiting'",
            job_id,
        )
        await connection.execute(
            "WITH locked AS (SELECT product FROM product_status WHERE job_id = $1"
            " AND status IN ('waiting', 'running') ORDER BY product FOR UPDATE)"
            " UPDATE product_status ps SET status = 'cancelled', created_at = now() FROM locked l"
            " WHERE ps.job_id = $1 AND ps.product = l.product AND ps.status IN ('waiting', 'running')",
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


async def update_workorder_text(
    connection: asyncpg.Connection, job_id: int, display_name: str | None, description: str | None
) -> None:
    await connection.execute(
        "UPDATE jobs SET display_name = coalesce($2, display_name), description = coalesce($3, description),"
        " updated_at = now() WHERE id = $1",
        job_id,
        display_name,
        description,
    )


JOB_TABLES = (
    "identity_failures",
    "audit_heads",  # a deleted job's audit entries stay: they are append-only (README "Proving a deletion")
    "receipts",
    "task_chunks",
    "product_status",
    "job_identities",
    "dispatch_queue",
    "retention_queue",
    "running_jobs",
    "due_watch",
    "overview_pending",
)


async def delete_jobs(connection: asyncpg.Connection, job_ids: list[int]) -> None:
    """Remove jobs and every row that belongs to them."""
    async with connection.transaction():
        await unsettle(connection, job_ids)  # before its product rows go: their counts leave the summary
        for table in JOB_TABLES:
            await connection.execute(f"DELETE FROM {table} WHERE job_id = ANY($1::bigint[])", job_ids)  # noqa: S608
        await connection.execute("DELETE FROM jobs WHERE id = ANY($1::bigint[])", job_ids)
